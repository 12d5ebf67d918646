"""Fine-tuning of the evidence classifier as TE's pipeline does it, resumable after every epoch.

TE's recipe: Hugging Face ``BertForSequenceClassification`` from ``bert_dir``, Adam at a constant ``lr``, the
cross-entropy summed over the batch, gradient norm clipped to ``max_grad_norm``, the training set reshuffled
every epoch, validation accuracy (ties: lower loss) picks the best epoch, stop when ``epoch - best_epoch >
patience``. Seeds as TE's: shuffling 12345, torch 10111213.

Files in ``folder`` (``OUTPUT/classifier``):
  classifier.pt              the best epoch's state dict (HF names; TE's file, loadable by our ``create_bert``)
  classifier_epoch_data.pt   {"epoch", "best_epoch", "best_val_acc", "best_val_loss", "results", "done"}
  last.pt                    the latest epoch's model, optimizer and random states; removed when training is done
"""
import os
import random

import torch
import torch.nn.functional as F
from tqdm import tqdm

from BERT_rationale_benchmark.models.model_utils import check_head, pad_batch, resolve_model_dir
from BERT_rationale_benchmark.utils import DataError
from baselines.safe_load import load_tensors

SHUFFLE_SEED, TORCH_SEED, VAL_BATCH_SIZE = 12345, 10111213, 32
RESTART = "remove the classifier folder's last.pt and classifier_epoch_data.pt to fine-tune from the start"


def _save(obj, path):
    """``torch.save`` that never leaves a half-written file behind."""
    partial = f"{path}.partial"
    torch.save(obj, partial)
    os.replace(partial, path)


def _pretrained(params, num_labels):
    from transformers import BertForSequenceClassification
    from transformers.utils import logging as hf_logging
    source = resolve_model_dir(params["bert_dir"])
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return BertForSequenceClassification.from_pretrained(source, num_labels=num_labels)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot load the pretrained BERT '{source}' ({str(error).splitlines()[0]}); offline, set "
                        "bert_dir in the params file to a local folder") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def _batches(items, size):
    return [items[start:start + size] for start in range(0, len(items), size)]


def _run_epoch(model, batches, device, optimizer=None, max_grad_norm=None, desc=""):
    """Summed loss and number correct over ``batches`` of ``(input_ids list, label)``; trains with ``optimizer``."""
    total_loss, correct = 0.0, 0
    progress = tqdm(batches, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    for batch in progress:
        inputs = pad_batch([ids for ids, _ in batch], device)
        labels = torch.tensor([label for _, label in batch], device=device)
        with torch.set_grad_enabled(optimizer is not None):
            logits = model(**inputs).logits
            loss = F.cross_entropy(logits, labels, reduction="sum")
        if optimizer is not None:
            if not torch.isfinite(loss):
                raise RuntimeError("the training loss is not finite (try a lower lr)")
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        total_loss += loss.item()
        correct += (logits.argmax(-1) == labels).sum().item()
        progress.set_postfix(loss=f"{loss.item() / len(batch):.3f}")
    return total_loss, correct


def train_classifier(params, train, val, folder, device="cpu", log=print):
    """Fine-tune (or finish fine-tuning) on ``train``/``val`` = lists of ``(input_ids list, label)``; returns the
    epoch data. Does nothing when ``classifier_epoch_data.pt`` says training is done."""
    os.makedirs(folder, exist_ok=True)
    best_file, data_file, last_file = (os.path.join(folder, n) for n in
                                       ("classifier.pt", "classifier_epoch_data.pt", "last.pt"))
    epoch_data = load_tensors(data_file, RESTART) if os.path.exists(data_file) else None
    if epoch_data and epoch_data.get("done"):
        return epoch_data
    config = params["evidence_classifier"]
    num_labels = len(config["classes"])
    torch.manual_seed(TORCH_SEED)
    model = _pretrained(params, num_labels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    shuffler = random.Random(SHUFFLE_SEED)
    epoch_data = {"epoch": -1, "best_epoch": -1, "best_val_acc": -1.0, "best_val_loss": float("inf"),
                  "results": {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}, "done": 0}
    if os.path.exists(last_file):
        state = load_tensors(last_file, RESTART)
        check_head(state["model"], num_labels, last_file)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        shuffler.setstate(state["shuffler"])
        torch.set_rng_state(state["torch_rng"])
        epoch_data = state["epoch_data"]
        log(f"resuming fine-tuning after epoch {epoch_data['epoch']} ({last_file})")
    for epoch in range(epoch_data["epoch"] + 1, config["epochs"]):
        model.train()
        order = shuffler.sample(train, k=len(train))
        loss, correct = _run_epoch(model, _batches(order, config["batch_size"]), device, optimizer,
                                   config.get("max_grad_norm"), desc=f"epoch {epoch + 1}/{config['epochs']}")
        model.eval()
        val_loss, val_correct = _run_epoch(model, _batches(val, VAL_BATCH_SIZE), device, desc="validation")
        results = epoch_data["results"]
        results["train_loss"].append(loss / len(train))
        results["train_acc"].append(correct / len(train))
        results["val_loss"].append(val_loss / len(val))
        results["val_acc"].append(val_correct / len(val))
        log(f"epoch {epoch + 1}: train loss {loss / len(train):.4f} acc {correct / len(train):.3f}, "
            f"val loss {val_loss / len(val):.4f} acc {val_correct / len(val):.3f}")
        epoch_data["epoch"] = epoch
        if (results["val_acc"][-1] > epoch_data["best_val_acc"] or (results["val_acc"][-1] ==
                                                                     epoch_data["best_val_acc"] and
                                                                     results["val_loss"][-1] <
                                                                     epoch_data["best_val_loss"])):
            epoch_data.update(best_epoch=epoch, best_val_acc=results["val_acc"][-1],
                              best_val_loss=results["val_loss"][-1])
            _save(model.state_dict(), best_file)
        stop = epoch - epoch_data["best_epoch"] > config["patience"]
        if stop or epoch == config["epochs"] - 1:
            break
        _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "shuffler": shuffler.getstate(),
               "torch_rng": torch.get_rng_state(), "epoch_data": epoch_data}, last_file)
        _save(epoch_data, data_file)
    epoch_data["done"] = 1
    _save(epoch_data, data_file)
    if os.path.exists(last_file):
        os.remove(last_file)
    log(f"fine-tuning done: best epoch {epoch_data['best_epoch'] + 1}, val acc {epoch_data['best_val_acc']:.3f}")
    return epoch_data
