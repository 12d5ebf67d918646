"""Train a small timm ViT on the synthetic "shapes on photos" data (scripts/make_synthetic_data.py).

Writes OUTPUT (a float32 timm state dict), OUTPUT with suffix .json (the model card: config, mean/std, classes,
seeds, validation accuracy) and OUTPUT with suffix .state.pt (optimizer state after every epoch, for --resume).
Training images come from DATA/imagenet/train (--train-source folder) or, by default, are generated on the fly
from DATA's seed (fresh images every epoch, never the validation ones); accuracy is measured on DATA/imagenet/val.
The same seeds give the same weights on the same machine and thread count.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import timm
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from baselines.cli import UserError  # noqa: E402
from baselines.data import synthetic  # noqa: E402
from baselines.safe_load import load_tensors  # noqa: E402

MEAN = STD = (0.5, 0.5, 0.5)
DEFAULTS = {"seed": 0, "epochs": 4, "train_size": 4000, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.05,
            "warmup": 0.1, "embed_dim": 128, "depth": 4, "num_heads": 4, "train_source": "generate"}


class TrainingError(UserError):
    """Bad input for training (data folder, output path, resume settings)."""


class GeneratedImages(Dataset):
    """Training images ``start .. start + count - 1`` of the generator, as the JPEG folders would store them."""

    def __init__(self, seed, start, count, transform):
        self.seed, self.start, self.count, self.transform = seed, start, count, transform

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        sample = synthetic.generate(self.seed, "train", self.start + index)
        return self.transform(synthetic.as_stored(sample.image)), sample.label


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="folder written by make_synthetic_data.py")
    parser.add_argument("--output", required=True, type=Path, help="checkpoint to write, e.g. synthetic_vit.pth")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run saved beside OUTPUT (without it an existing OUTPUT "
                             "is refused); its settings are kept, so other options must match them or be left out")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="data loader worker processes (default 1)")
    hyper = parser.add_argument_group("training settings (stored with the run)")
    hyper.add_argument("--seed", type=int, help=f"model init and shuffling seed (default {DEFAULTS['seed']})")
    hyper.add_argument("--epochs", type=int, help=f"epochs (default {DEFAULTS['epochs']})")
    hyper.add_argument("--train-size", type=int,
                       help=f"generated training images per epoch (default {DEFAULTS['train_size']}; "
                            "ignored with --train-source folder)")
    hyper.add_argument("--train-source", choices=("generate", "folder"),
                       help="generate images on the fly (default) or read DATA/imagenet/train")
    hyper.add_argument("--batch-size", type=int, help=f"batch size (default {DEFAULTS['batch_size']})")
    hyper.add_argument("--lr", type=float, help=f"AdamW peak learning rate (default {DEFAULTS['lr']})")
    hyper.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {DEFAULTS['weight_decay']})")
    hyper.add_argument("--warmup", type=float, help=f"warm-up fraction of all steps (default {DEFAULTS['warmup']})")
    hyper.add_argument("--embed-dim", type=int, help=f"ViT width (default {DEFAULTS['embed_dim']})")
    hyper.add_argument("--depth", type=int, help=f"ViT blocks (default {DEFAULTS['depth']})")
    hyper.add_argument("--num-heads", type=int, help=f"attention heads (default {DEFAULTS['num_heads']})")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.workers < 0:
        parser.error("--threads must be >= 1 and --workers >= 0")
    return args


def resolve_settings(args, stored=None):
    """Training settings: the command line over DEFAULTS, or the stored ones, which explicit options must match."""
    given = {key: getattr(args, key) for key in DEFAULTS if getattr(args, key) is not None}
    if stored is None:
        settings = {**DEFAULTS, **given}
        if settings["embed_dim"] % settings["num_heads"]:
            raise TrainingError("--embed-dim must be a multiple of --num-heads")
        if min(settings["epochs"], settings["train_size"], settings["batch_size"]) < 1:
            raise TrainingError("--epochs, --train-size and --batch-size must be >= 1")
        return settings
    for key, value in given.items():
        if value != stored[key]:
            raise TrainingError(f"--{key.replace('_', '-')} {value} differs from the interrupted run's {stored[key]}")
    return dict(stored)


def model_config(settings, num_classes):
    """The model card's config block."""
    return {"img_size": synthetic.IMAGE_SIZE, "patch_size": 16, "embed_dim": settings["embed_dim"],
            "depth": settings["depth"], "num_heads": settings["num_heads"], "mlp_ratio": 4.0,
            "num_classes": num_classes}


def build_model(config):
    """A standard timm VisionTransformer (class token, token pooling, qkv bias) for a card's config."""
    return VisionTransformer(**config, qkv_bias=True, class_token=True, global_pool="token")


def eval_transform():
    """Preprocessing of the eval scripts: Resize((224, 224)), ToTensor, Normalize(MEAN, STD)."""
    return transforms.Compose([transforms.Resize((synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE)),
                               transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def read_data_card(data):
    """DATA/synthetic.json (written by make_synthetic_data.py), checked against the generator's classes."""
    path = data / "synthetic.json"
    if not path.is_file() or not (data / "imagenet" / "val").is_dir():
        raise TrainingError(f"{data} has no synthetic.json and imagenet/val; run make_synthetic_data.py first")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{path} is not valid JSON ({exc})") from None
    if tuple(card.get("wnids", ())) != synthetic.WNIDS or "seed" not in card:
        raise TrainingError(f"{path} has no seed or lists other classes than baselines/data/synthetic.py")
    return card


def train_dataset(data, data_seed, settings, epoch):
    """One epoch's training images: DATA/imagenet/train, or ``train_size`` fresh generated ones."""
    if settings["train_source"] == "folder":
        if not (data / "imagenet" / "train").is_dir():
            raise TrainingError(f"{data}/imagenet/train is missing; write it with make_synthetic_data.py --num-train")
        return torchvision.datasets.ImageNet(data / "imagenet", split="train", transform=eval_transform())
    size = settings["train_size"]
    return GeneratedImages(data_seed, epoch * size, size, eval_transform())


def train_loader(dataset, settings, epoch, workers):
    """Loader of one epoch's training images, shuffled by (seed, epoch)."""
    order = torch.Generator().manual_seed(settings["seed"] * 100003 + epoch)
    return DataLoader(dataset, settings["batch_size"], shuffle=True, generator=order, num_workers=workers)


def evaluate(model, loader):
    """Top-1 accuracy of ``model`` on ``loader``."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (model(images).argmax(1) == labels).sum().item()
            total += len(labels)
    return correct / max(total, 1)


def lr_factor(step, total, warmup):
    """Linear warm-up over ``warmup * total`` steps, then cosine decay to zero."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def state_path(output):
    """Where the resume state of ``output`` lives."""
    return output.with_suffix(".state.pt")


def load_resume_state(output):
    """The resume state of ``output``: tensors and plain values only (a file that would run code is refused)."""
    if not state_path(output).is_file():
        raise TrainingError(f"nothing to resume: {state_path(output)} does not exist")
    try:
        return load_tensors(state_path(output), "remove it to start over")
    except UserError as exc:
        raise TrainingError(str(exc)) from None


def card_path(output):
    """Where the model card of ``output`` lives."""
    return output.with_suffix(".json")


def train(data, output, args, resume=False, threads=2, workers=1):
    """Train (or resume) and write the checkpoint, its card and the resume state; return the card."""
    torch.set_num_threads(threads)
    data_card = read_data_card(data)
    stored = None
    if resume:
        stored = load_resume_state(output)
    elif any(path.exists() for path in (output, card_path(output), state_path(output))):
        raise TrainingError(f"{output} (or its .json/.state.pt) exists; pass --resume or choose another --output")
    settings = resolve_settings(args, stored and stored["settings"])
    if stored and stored["data_seed"] != data_card["seed"]:
        raise TrainingError(f"{data} has data seed {data_card['seed']}, the interrupted run used {stored['data_seed']}")
    config = model_config(settings, len(data_card["wnids"]))
    torch.manual_seed(settings["seed"])
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    epoch_size = len(train_dataset(data, data_card["seed"], settings, 0))
    total = math.ceil(epoch_size / settings["batch_size"]) * settings["epochs"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, settings["warmup"]))
    history, seconds, start_epoch = restore(stored, model, optimizer, scheduler)
    val = torchvision.datasets.ImageNet(data / "imagenet", split="val", transform=eval_transform())
    val_loader = DataLoader(val, 100, num_workers=workers)
    output.parent.mkdir(parents=True, exist_ok=True)
    for epoch in range(start_epoch, settings["epochs"]):
        began = time.time()
        model.train()
        bar = tqdm(train_loader(train_dataset(data, data_card["seed"], settings, epoch), settings, epoch, workers),
                   desc=f"epoch {epoch + 1}/{settings['epochs']}", unit="batch")
        for images, labels in bar:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        accuracy = evaluate(model, val_loader)
        seconds += time.time() - began
        history.append({"epoch": epoch + 1, "val_accuracy": accuracy, "seconds": round(seconds, 1)})
        tqdm.write(f"epoch {epoch + 1}: validation accuracy {accuracy:.4f} ({seconds:.0f} s so far)")
        _atomic_save({"settings": settings, "data_seed": data_card["seed"], "epoch": epoch + 1,
                      "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "history": history, "seconds": seconds},
                     state_path(output))
    train_images = epoch_size * (1 if settings["train_source"] == "folder" else settings["epochs"])
    card = {"config": config, "mean": list(MEAN), "std": list(STD), "class_names": data_card["class_names"],
            "wnids": data_card["wnids"], "seed": settings["seed"], "val_accuracy": history[-1]["val_accuracy"],
            "val_images": len(val), "data_seed": data_card["seed"], "train_images": train_images,
            "settings": settings, "train_seconds": round(seconds, 1), "threads": threads, "history": history,
            "versions": {"torch": torch.__version__, "timm": timm.__version__}}
    _atomic_save({key: value.float() for key, value in model.state_dict().items()}, output)
    card_path(output).write_text(json.dumps(card, indent=2) + "\n")
    return card


def _atomic_save(obj, path):
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    partial.replace(path)


def restore(stored, model, optimizer, scheduler):
    """Load a resume state (``--resume``) into the model, optimizer and scheduler; returns ``(history, seconds,
    start_epoch)``, the fresh values without one."""
    if not stored:
        return [], 0.0, 0
    model.load_state_dict(stored["model"])
    optimizer.load_state_dict(stored["optimizer"])
    scheduler.load_state_dict(stored["scheduler"])
    return stored["history"], stored["seconds"], stored["epoch"]


def main(argv=None):
    args = parse_args(argv)
    try:
        card = train(args.data, args.output, args, args.resume, args.threads, args.workers)
    except TrainingError as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {args.output}: validation accuracy {card['val_accuracy']:.4f} after {card['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
