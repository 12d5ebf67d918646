"""Small BERTs for tests: a Hugging Face classifier with lively random weights, saved as a model folder."""
import torch
from transformers import BertConfig, BertForSequenceClassification

from baselines.models.bert import create_bert

VOCAB = 40


def hf_tiny(layers=3, hidden=16, heads=4, labels=3, seed=0, offset=0.0):
    """An HF ``BertForSequenceClassification`` with weights std 0.2 (embeddings 0.5), LayerNorm gains near 1.

    ``offset`` > 0 shifts biases and LayerNorm shifts up, which keeps the LRP denominators away from zero (the
    originals' rules amplify rounding about 10^4 times near zero sums)."""
    config = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=32, num_labels=labels,
                        type_vocab_size=2)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p) + offset)
            elif "embeddings" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def tiny_pair(folder, **kwargs):
    """``(hf_model, our_model)`` with the same weights; the HF model is saved to ``folder`` first."""
    hf = hf_tiny(**kwargs)
    hf.save_pretrained(folder)
    return hf, create_bert(folder)


def padded_batch(lengths, seed=1, width=None):
    """Random token ids ([CLS] = 1 first) right-padded to ``width`` (default the longest), with the mask."""
    generator = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(2, VOCAB, (n,), generator=generator)
        ids[row, 0] = 1
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def sample(inputs, row):
    """Sample ``row`` of a padded batch alone, unpadded."""
    n = int(inputs["attention_mask"][row].sum())
    return {k: v[row:row + 1, :n] for k, v in inputs.items()}
