"""The runners of the steps: each builds the very argument list its script would parse and calls the script's
evaluate function in this process with the models and data loaded once for the whole run (``Context``)."""
import json
import shutil
from functools import cached_property
from pathlib import Path

import h5py

from BERT_rationale_benchmark import summarize
from BERT_rationale_benchmark.models.model_utils import load_classifier
from BERT_rationale_benchmark.models.pipeline import bert_pipeline
from BERT_rationale_benchmark.utils import load_split
from BERT_rationale_benchmark.words import TOP_K
from baselines.BERT import perturbation_movies
from baselines.ViT import generate_visualizations, imagenet_seg_eval, pertubation_eval_from_hdf5
from baselines.eval import cli
from baselines.suite.suites import hdf5_path

SEGMENTATION_KEYS = ("num_images", "pixel_accuracy", "mean_ap", "mean_iou", "mean_f1")
PERTURBATION_KEYS = ("num_images", "steps", "accuracy", "auc", "auc_ti", "abpc_logit", "abpc_prob")


class Context:
    """What the steps share: the configuration, the torchrun-aware process setup and, loaded on first use, the
    ViT, its data sets, the fine-tuned BERT and the encoded documents."""

    def __init__(self, config, dist):
        self.config, self.dist = config, dist
        self.documents = {}

    def vit_arguments(self):
        config = self.config
        return ((["--model", config.vit_model] if config.vit_model else [])
                + (["--weights", str(config.vit_weights)] if config.vit_weights else [])
                + ["--batch-size", str(config.image_batch), "--num-workers", "0", "--device", str(self.dist.device)]
                + (["--limit", str(config.num_images)] if config.suite == "paper" and config.num_images else []))

    @cached_property
    def vit(self):
        return cli.load_model(self.config.vit_model, self.config.vit_weights, self.dist.device)

    @cached_property
    def segmentation_set(self):
        return imagenet_seg_eval.segmentation_set(str(self.config.seg_path), self.vit.img_size)

    @cached_property
    def validation_set(self):
        return generate_visualizations.validation_set(str(self.config.imagenet), self.vit.img_size)

    def pipeline_arguments(self, method):
        config = self.config
        return bert_pipeline.parse_args(["--data_dir", str(config.eraser), "--output_dir", str(config.bert_output),
                                         "--model_params", str(config.bert_params), "--device", config.device,
                                         "--batch-size", str(config.text_batch), "--method", method])

    @cached_property
    def bert_data(self):
        """bert_pipeline.prepare: documents, encodings and the checkpoint (fine-tuned first when missing)."""
        return bert_pipeline.prepare(self.pipeline_arguments("transformer_attribution"))

    @cached_property
    def bert(self):
        data = self.bert_data
        return load_classifier(data.params, data.checkpoint, len(data.classes), self.config.device)

    def encoded(self, args):
        key = (tuple(args.splits), args.limit)
        if key not in self.documents:
            self.documents[key] = perturbation_movies.load_documents(args)
        return self.documents[key]


def synthetic_data(context, step):
    from scripts import make_synthetic_data
    folder = context.config.synthetic
    return cached_data(folder, step, lambda: make_synthetic_data.write_dataset(
        folder, step.settings["seed"], num_train=0, num_val=step.settings["num_val"], overwrite=True))


def eraser_data(context, step):
    from scripts import make_eraser_data
    folder = context.config.eraser

    def write():
        make_eraser_data.prepare_output(folder, overwrite=True)
        make_eraser_data.write_dataset(folder, step.settings["seed"], step.settings["num_docs"])
    return cached_data(folder, step, write)


def cached_data(folder, step, write):
    """Generate the data unless ``folder`` already holds it for the same settings (stamp file), so a data root
    shared by several runs is generated once."""
    stamp = Path(folder) / "reproduce_data.json"
    if stamp.is_file() and stamp.read_text() == json.dumps(step.settings, sort_keys=True):
        return dict(step.settings)
    if stamp.exists():
        stamp.unlink()
    write()
    stamp.write_text(json.dumps(step.settings, sort_keys=True))
    return dict(step.settings)


def segmentation(context, step):
    out = context.config.output / "runs" / "segmentation" / step.method
    args = imagenet_seg_eval.parse(["--method", step.method, "--imagenet-seg-path", str(context.config.seg_path),
                                    "--output", str(out)] + context.vit_arguments())
    cli.check_common(args)
    imagenet_seg_eval.evaluate(args, context.dist, model=context.vit, dataset=context.segmentation_set)
    return merged(context, lambda: read_results(out / "results.json", SEGMENTATION_KEYS))


def visualizations(context, step):
    config, vis_class = context.config, step.settings["vis_class"]
    path = hdf5_path(config, step.method, vis_class)
    args = generate_visualizations.parse(
        ["--method", step.method, "--imagenet-validation-path", str(config.imagenet), "--vis-class", vis_class,
         "--output", str(path)] + (["--subset", str(config.subset)] if config.subset else [])
        + context.vit_arguments())
    cli.check_common(args)
    stale_outputs(path, step.fingerprint)
    generate_visualizations.generate(args, context.dist, model=context.vit, dataset=context.validation_set)

    def rows():
        with h5py.File(path, "r") as written:
            return {"rows": len(written["target"])}
    return merged(context, rows)


def stale_outputs(path, fingerprint):
    """Remove a results file (and its partial state) that a step with other settings left; a partial file of this
    very step stays, so the generator resumes it."""
    stamp = Path(f"{path}.fingerprint")
    if not (stamp.is_file() and stamp.read_text() == fingerprint):
        for old in [path, *Path(path).parent.glob(Path(path).name + ".partial*")]:
            Path(old).unlink(missing_ok=True)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint)


def perturbation(context, step):
    settings, config = step.settings, context.config
    out = (config.output / "runs" / "perturbation" / step.method / settings["vis_class"]
           / ("neg" if settings["neg"] else "pos"))
    args = pertubation_eval_from_hdf5.parse(
        ["--method", step.method, "--vis-class", settings["vis_class"], "--output", str(out),
         "--input", str(hdf5_path(config, step.method, settings["vis_class"]))]
        + (["--neg", "--no-abpc"] if settings["neg"] else []) + context.vit_arguments())
    cli.check_common(args)
    pertubation_eval_from_hdf5.evaluate(args, context.dist, model=context.vit)
    return merged(context, lambda: read_results(out / "results.json", PERTURBATION_KEYS))


def finetune(context, step):
    """Fine-tune (or resume) the classifier; a classifier folder left by other settings is replaced, a given
    checkpoint is copied in instead of training."""
    folder = context.config.bert_output / "classifier"
    stamp = folder / "reproduce_fingerprint"
    if folder.exists() and not (stamp.is_file() and stamp.read_text() == step.fingerprint):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(step.fingerprint)
    if context.config.bert_checkpoint:
        shutil.copyfile(context.config.bert_checkpoint, folder / "classifier.pt")
    context.__dict__.pop("bert_data", None)
    data = context.bert_data
    return {"documents": len(data.encodings), "truncated": data.truncated}


def eraser(context, step):
    args = context.pipeline_arguments(step.method)
    summary = bert_pipeline.evaluate(args, context.bert_data, context.bert)
    f1 = summarize.collect(load_split(str(context.config.eraser), "test"),
                           [context.config.bert_output / step.method], TOP_K)[step.method]
    return {"token_f1": {str(k): v for k, v in f1.items()}, "test_accuracy": summary["test_accuracy"],
            "test_documents": summary["test_documents"]}


def bert_perturbation(context, step):
    config, settings = context.config, step.settings
    args = perturbation_movies.parse_args(
        ["--data_dir", str(config.eraser), "--output_dir", str(config.bert_output), "--model_params",
         str(config.bert_params), "--method", step.method, "--splits", *settings["splits"], "--batch-size",
         str(settings["batch_size"]), "--device", config.device] + (["--neg", "--no-abpc"] if settings["neg"] else [])
        + (["--limit", str(settings["limit"])] if settings["limit"] else []))
    _, ids, labels = context.encoded(args)
    return perturbation_movies.evaluate(args, ids, labels, context.bert)


def merged(context, read):
    """``read()`` on rank 0, which writes the merged results of a sharded step; None on the other ranks (under
    torchrun they shard the images but record nothing)."""
    return read() if context.dist.rank == 0 else None


def read_results(path, keys):
    with open(path) as handle:
        data = json.load(handle)
    return {key: data[key] for key in keys if key in data}


RUNNERS = {"synthetic_data": synthetic_data, "eraser_data": eraser_data, "segmentation": segmentation,
           "visualizations": visualizations, "perturbation": perturbation, "finetune": finetune, "eraser": eraser,
           "bert_perturbation": bert_perturbation}
