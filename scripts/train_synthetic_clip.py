"""Train a tiny CLIP contrastively on the synthetic "shapes on photos" data (scripts/make_synthetic_data.py).

Each training image gets a caption made from its label (TEMPLATES, e.g. "a photo of a star", "a green star"; the
colour word is the class's hue band). The loss is CLIP's symmetric cross-entropy over the batch's image-caption
similarities, with every caption of the same class counted as a positive (the batch holds several images per class).
The ``train_size`` training images are generated once and kept in memory; every epoch shows them again, randomly
mirrored (every class is mirror-symmetric as a class), with freshly drawn captions. Writes OUTPUT (an OpenAI/open_clip-layout float32 state dict) and OUTPUT with suffix .json (the model card: config,
vocabulary, classes, seeds, zero-shot validation accuracy with the prompt "a photo of a {class}"), plus a resume
state after every epoch. The same seeds give the same weights on the same machine and thread count.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import transforms
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_synthetic_vit as vit_training  # noqa: E402
from baselines.data import synthetic  # noqa: E402
from baselines.models.clip import CLIP, CLIPConfig, WordTokenizer, openai_from_ours  # noqa: E402

COLOURS = ("red", "orange", "yellow", "lime", "green", "cyan", "azure", "blue", "purple", "pink")
"""The colour word of each class's hue band (synthetic.CLASS_HUES, PIL's 0-255 hue scale in steps of 25.6)."""
TEMPLATES = ("a photo of a {name}", "a {colour} {name}", "a picture of a {name}", "a {name}",
             "a drawing of a {colour} {name}", "a {name} shape", "a photo of a {colour} {name}")
PROMPT = "a photo of a {name}"
"""The zero-shot prompt of the benchmarks (Beyond Intuition's CLIP perturbation test)."""
DEFAULTS = {"seed": 0, "epochs": 8, "train_size": 3000, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05,
            "warmup": 0.1, "embed_dim": 32, "vision_width": 64, "vision_layers": 4, "vision_heads": 2,
            "text_width": 32, "text_layers": 2, "text_heads": 2, "patch_size": 32, "context_length": 12}
MODEL_KEYS = ("embed_dim", "vision_width", "vision_layers", "vision_heads", "text_width", "text_layers", "text_heads",
              "patch_size", "context_length")


def vocabulary():
    """Padding, unknown, every caption word, then start and end (the end token has the largest id)."""
    words = sorted({w for t in TEMPLATES for w in t.replace("{name}", "").replace("{colour}", "").split()}
                   | set(synthetic.CLASS_NAMES) | set(COLOURS))
    return ["<pad>", "<unk>", *words, "<start>", "<end>"]


def caption(label, index, epoch, seed):
    """The caption of training image ``index`` in ``epoch``: a template drawn from (seed, epoch, index)."""
    template = TEMPLATES[(index * 7919 + epoch * 104729 + seed) % len(TEMPLATES)]
    return template.format(name=synthetic.CLASS_NAMES[label], colour=COLOURS[label])


def model_config(settings, class_names):
    return CLIPConfig(**{k: settings[k] for k in MODEL_KEYS}, image_size=synthetic.IMAGE_SIZE,
                      vocab_size=len(vocabulary()), quick_gelu=False, mean=vit_training.MEAN, std=vit_training.STD,
                      class_names=tuple(class_names))


def contrastive_loss(logits, labels):
    """Symmetric cross-entropy of ``logits`` ``[B, B]`` (images x captions) against the same-class targets,
    each row's positives weighted equally."""
    same = (labels[:, None] == labels[None, :]).to(logits.dtype)
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def zero_shot_accuracy(model, loader, tokenizer, class_names):
    """Top-1 accuracy of "a photo of a {class}" prompts on ``loader``."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        texts = model.encode_text(tokenizer([PROMPT.format(name=n) for n in class_names]).ids)
        for images, labels in loader:
            logits = F.normalize(model.encode_image(images), dim=-1) @ F.normalize(texts, dim=-1).t()
            correct += (logits.argmax(1) == labels).sum().item()
            total += len(labels)
    return correct / max(total, 1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="folder written by make_synthetic_data.py")
    parser.add_argument("--output", required=True, type=Path, help="checkpoint to write, e.g. synthetic_clip.pth")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run saved beside OUTPUT")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="data loader worker processes (default 1)")
    hyper = parser.add_argument_group("training settings (stored with the run)")
    for key, value in DEFAULTS.items():
        hyper.add_argument(f"--{key.replace('_', '-')}", type=type(value), help=f"default {value}")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.workers < 0:
        parser.error("--threads must be >= 1 and --workers >= 0")
    return args


def train(data, output, args, resume=False, threads=2, workers=1):
    """Train (or resume) and write the checkpoint, its card and the resume state; return the card."""
    torch.set_num_threads(threads)
    data_card = vit_training.read_data_card(data)
    state_file, card_file = output.with_suffix(".state.pt"), output.with_suffix(".json")
    stored = None
    if resume:
        if not state_file.is_file():
            raise vit_training.TrainingError(f"nothing to resume: {state_file} does not exist")
        stored = torch.load(state_file, weights_only=True)
    elif any(p.exists() for p in (output, card_file, state_file)):
        raise vit_training.TrainingError(f"{output} (or its .json/.state.pt) exists; pass --resume or another --output")
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    settings = dict(stored["settings"]) if stored else {**DEFAULTS, **given}
    config = model_config(settings, data_card["class_names"])
    tokenizer = WordTokenizer(vocabulary(), config.context_length)
    torch.manual_seed(settings["seed"])
    model = CLIP(config, tokenizer)
    _initialise(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    steps = math.ceil(settings["train_size"] / settings["batch_size"]) * settings["epochs"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: vit_training.lr_factor(step, steps, settings["warmup"]))
    history, seconds, start_epoch = vit_training.restore(stored, model, optimizer, scheduler)
    import torchvision
    val = torchvision.datasets.ImageNet(data / "imagenet", split="val", transform=vit_training.eval_transform())
    val_loader = DataLoader(val, 100, num_workers=workers)
    output.parent.mkdir(parents=True, exist_ok=True)
    began = time.time()
    images_all, labels_all = training_images(data_card["seed"], settings["train_size"], workers)
    seconds += time.time() - began
    for epoch in range(start_epoch, settings["epochs"]):
        began = time.time()
        model.train()
        order = torch.Generator().manual_seed(settings["seed"] * 100003 + epoch)
        batches = torch.randperm(len(labels_all), generator=order).split(settings["batch_size"])
        bar = tqdm([b for b in batches if len(b) == settings["batch_size"]],
                   desc=f"epoch {epoch + 1}/{settings['epochs']}", unit="batch")
        for step, index in enumerate(bar):
            mirror = torch.rand(len(index), generator=order) < 0.5
            images = torch.where(mirror[:, None, None, None], images_all[index].flip(-1), images_all[index])
            images = (images.float() / 255 - 0.5) / 0.5
            labels = labels_all[index]
            captions = [caption(int(label), step * settings["batch_size"] + i, epoch, settings["seed"])
                        for i, label in enumerate(labels)]
            with torch.no_grad():
                model.logit_scale.clamp_(max=math.log(100))
            logits = model(images, tokenizer(captions).ids)
            loss = contrastive_loss(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        accuracy = zero_shot_accuracy(model, val_loader, tokenizer, data_card["class_names"])
        seconds += time.time() - began
        history.append({"epoch": epoch + 1, "val_accuracy": accuracy, "seconds": round(seconds, 1)})
        tqdm.write(f"epoch {epoch + 1}: zero-shot validation accuracy {accuracy:.4f} ({seconds:.0f} s so far)")
        vit_training._atomic_save({"settings": settings, "epoch": epoch + 1, "model": model.state_dict(),
                                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                   "history": history, "seconds": seconds}, state_file)
    model_fields = {k: getattr(config, k) for k in (*MODEL_KEYS, "image_size", "vocab_size", "quick_gelu")}
    card = {"family": "clip", "config": model_fields, "mean": list(config.mean), "std": list(config.std),
            "class_names": data_card["class_names"], "wnids": data_card["wnids"], "vocabulary": vocabulary(),
            "prompt": PROMPT, "templates": list(TEMPLATES), "colours": list(COLOURS), "seed": settings["seed"],
            "val_accuracy": history[-1]["val_accuracy"], "val_images": len(val), "data_seed": data_card["seed"],
            "train_images": settings["train_size"], "settings": settings,
            "train_seconds": round(seconds, 1), "threads": threads, "history": history,
            "versions": {"torch": torch.__version__}}
    vit_training._atomic_save(openai_from_ours({k: v.float() for k, v in model.state_dict().items()}), output)
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    return card


def training_images(seed, count, workers):
    """Training images ``0 .. count - 1`` of the generator as stored (JPEG round trip), ``uint8 [count, 3, H, W]``,
    and their labels."""
    dataset = vit_training.GeneratedImages(seed, 0, count, transforms.PILToTensor())
    images, labels = [], []
    for batch, label in tqdm(DataLoader(dataset, 100, num_workers=workers), desc="generating training images",
                             unit="batch"):
        images.append(batch)
        labels.append(label)
    return torch.cat(images), torch.cat(labels)


def _initialise(model):
    """OpenAI CLIP's initialisation (normal weights scaled by width and depth, zero biases, unit LayerNorms)."""
    for tower, width, depth in ((model.visual, model.config.vision_width, model.config.vision_layers),
                                (model.text, model.config.text_width, model.config.text_layers)):
        for block in tower.blocks:
            torch.nn.init.normal_(block.attn.qkv.weight, std=width ** -0.5)
            torch.nn.init.normal_(block.attn.proj.weight, std=width ** -0.5 * (2 * depth) ** -0.5)
            torch.nn.init.normal_(block.mlp.fc1.weight, std=(2 * width) ** -0.5)
            torch.nn.init.normal_(block.mlp.fc2.weight, std=width ** -0.5 * (2 * depth) ** -0.5)
            for linear in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2):
                torch.nn.init.zeros_(linear.bias)
        torch.nn.init.normal_(tower.proj.weight, std=width ** -0.5)
    torch.nn.init.normal_(model.visual.class_embedding, std=model.config.vision_width ** -0.5)
    torch.nn.init.normal_(model.visual.positional_embedding, std=model.config.vision_width ** -0.5)
    torch.nn.init.normal_(model.visual.conv1.weight, std=0.02)
    torch.nn.init.normal_(model.text.token_embedding.weight, std=0.02)
    torch.nn.init.normal_(model.text.positional_embedding, std=0.01)


def main(argv=None):
    args = parse_args(argv)
    try:
        card = train(args.data, args.output, args, args.resume, args.threads, args.workers)
    except vit_training.TrainingError as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {args.output}: zero-shot validation accuracy {card['val_accuracy']:.4f} after "
          f"{card['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
