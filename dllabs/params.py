"""The typed schema of ``params.yaml`` and the loader every stage calls first.

Every key must be present in ``params.yaml``, so the file is the single place where a run's
settings live and DVC tracks all of them; the few keys added after revisions without them were
committed have defaults (``base.backend``, ``base.devices``, ``data.follow_links``,
``transfer.input_size``, ``transfer.scratch``), so ``dl-labs predict --rev`` and the
reproducibility check still read those revisions, and ``conf/config.yaml`` writes them anyway.
Validation is strict:

- an unknown key names its full path and the closest valid key (``data.imagez`` -> ``data.images``);
- a wrong type or out-of-range value names the key, the value and what is allowed;
- rules that tie keys together (``data.images: folder`` needs ``data.images_dir``) name both keys.

Later labs add their sections (``mlp``, ``cnn``, ...) to :class:`Params`.
"""

from __future__ import annotations

import codecs
import difflib
import functools
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dllabs.errors import ParamsError, os_error

PARAMS_FILE = "params.yaml"
# The committed params.yaml is about 3 KB; a list of a thousand class names or stopwords is tens
# of KB. A params file past this is not one: the pure-Python YAML parser DVC and the stages share
# takes seconds on a file this size and minutes and gigabytes of memory on megabytes.
MAX_PARAMS_BYTES = 256 * 1024
MAX_DEPTH = 32  # params nest four levels deep; a parser recurses once per level
MAX_INT_DIGITS = 100  # Python refuses to convert past 4,300 digits; no param needs more than 20

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
ImageSize = Annotated[list[Annotated[int, Field(ge=4, le=1024)]], Field(min_length=2, max_length=2)]
Label = int | str


class Section(BaseModel):
    """A params section: no unknown keys, no silent type coercion, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Base(Section):
    """Settings every stage shares."""

    seed: Annotated[int, Field(ge=0, le=2**31 - 1)]
    # A default, unlike other keys: `dl-labs predict --rev` and the reproducibility check read
    # the params of revisions made before the key existed, whose models trained on TensorFlow.
    backend: Literal["tensorflow", "jax", "torch"] = "tensorflow"
    device: Literal["auto", "cpu", "gpu"]
    devices: Annotated[int, Field(ge=1)] | Literal["all"] = 1
    mixed_precision: Literal["off", "auto"]

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_off_is_false(cls, value: Any) -> Any:
        return "off" if value is False else value  # PyYAML (YAML 1.1) reads a bare `off` as false


class Split(Section):
    """Fractions for the deterministic, stratified train/val/test split."""

    val_fraction: Fraction
    test_fraction: Fraction

    @model_validator(mode="after")
    def _leave_training_rows(self) -> Split:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ParamsError(
                f"{PARAMS_FILE}: data.split.val_fraction + data.split.test_fraction = "
                f"{self.val_fraction + self.test_fraction:g}; expected below 0.9 so that "
                "training keeps at least 10% of the rows"
            )
        return self


class Data(Section):
    """Which source each lab reads, and how bring-your-own sources are interpreted."""

    preset: (
        str  # the dataset preset composed into params.yaml (dllabs.tooling.presets); informational
    )
    images: Literal["digits", "mnist", "fashion_mnist", "cifar10", "folder"]
    images_dir: str | None
    # A params.yaml without the key gets the safe choice: links leading outside are refused.
    follow_links: bool = False
    image_size: ImageSize
    color_mode: Literal["grayscale", "rgb"]
    anomaly: Literal["digits", "ecg5000", "csv"]
    csv_path: str | None
    label_column: Label | None
    normal_label: Label | list[Label] | None
    anomaly_scaling: Literal["minmax", "standard", "none"]
    text: Literal["lee", "alice", "file"]
    text_path: str | None
    ecg_sha256: Sha256 | None
    alice_sha256: Sha256 | None
    split: Split

    @model_validator(mode="after")
    def _source_needs_its_path(self) -> Data:
        needs = [
            (self.images == "folder", "images_dir", self.images_dir, "data.images is 'folder'"),
            (self.anomaly == "csv", "csv_path", self.csv_path, "data.anomaly is 'csv'"),
            (self.anomaly == "csv", "label_column", self.label_column, "data.anomaly is 'csv'"),
            (self.text == "file", "text_path", self.text_path, "data.text is 'file'"),
        ]
        for applies, key, value, because in needs:
            if applies and value in (None, ""):
                raise ParamsError(f"{PARAMS_FILE}: data.{key} is required when {because}")
        return self


class Tokenize(Section):
    """The CBOW lab's text cleaning options, applied in the order the lab lists them."""

    strip_gutenberg: bool
    remove_special: bool
    remove_digits: bool
    remove_punctuation: bool
    lowercase: bool
    sentences: Literal["auto", "punkt", "nltk", "lines", "regex"]
    stopwords: Literal["bundled", "nltk", "none"]
    extra_stopwords: list[str]
    min_token_length: Annotated[int, Field(ge=1, le=50)]
    min_sentence_tokens: Annotated[int, Field(ge=1, le=100)]


PositiveInt = Annotated[int, Field(ge=1)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
Penalty = Annotated[float, Field(ge=0.0, le=1.0)]


class Training(Section):
    """How a Keras model is fitted: optimizer, budget, early stopping, learning-rate schedule."""

    optimizer: Literal["sgd", "adagrad", "adadelta", "rmsprop", "adam"]
    learning_rate: Annotated[float, Field(gt=0.0, le=10.0)]
    momentum: Rate  # sgd and rmsprop
    nesterov: bool  # sgd only
    batch_size: Annotated[int, Field(ge=1, le=65536)]
    epochs: Annotated[int, Field(ge=1, le=10000)]
    patience: Annotated[int, Field(ge=0)]
    reduce_lr_patience: Annotated[int, Field(ge=0)]
    reduce_lr_factor: Annotated[float, Field(gt=0.0, lt=1.0)]


class Augment(Section):
    """Random training-time augmentation (inactive at inference)."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"]
    rotation: Annotated[float, Field(ge=0.0, le=0.5)]
    zoom: Annotated[float, Field(ge=0.0, lt=1.0)]
    translation: Annotated[float, Field(ge=0.0, lt=1.0)]


Activation = Literal["relu", "tanh", "sigmoid", "leaky_relu", "elu"]


class MLP(Training):
    """The feedforward network: (resize), flatten, dense layers, softmax."""

    input_size: ImageSize | None
    augment: Augment
    hidden_units: Annotated[list[PositiveInt], Field(min_length=1, max_length=20)]
    activation: Activation
    dropout: Rate
    l1: Penalty
    l2: Penalty
    batch_norm: bool


class CNN(Training):
    """The convolutional classifier: conv -> (batch norm) -> ReLU -> pool blocks, dense head."""

    preset: Literal["custom", "lenet5"]
    # Revisions whose params.yaml lacks the key trained on the images at their own size.
    input_size: ImageSize | None = None
    filters: Annotated[list[PositiveInt], Field(min_length=1, max_length=10)]
    kernel_sizes: Annotated[list[PositiveInt], Field(min_length=1, max_length=10)]
    padding: Literal["same", "valid"] | list[Literal["same", "valid"]]
    batch_norm: bool
    pool_size: Annotated[int, Field(ge=1, le=8)]
    pooling: Literal["avg", "max", "flatten"]
    dense_units: Annotated[list[PositiveInt], Field(max_length=10)]
    dropout: Rate
    augment: Augment

    @model_validator(mode="after")
    def _one_kernel_per_block(self) -> CNN:
        blocks = len(self.filters)
        for key, value in (("kernel_sizes", self.kernel_sizes), ("padding", self.padding)):
            if isinstance(value, list) and len(value) not in (1, blocks):
                raise ParamsError(
                    f"{PARAMS_FILE}: cnn.{key} has {len(value)} entries but cnn.filters has "
                    f"{blocks}; give one per conv block (or a single one for all)"
                )
        return self


class Autoencoder(Training):
    """Dense autoencoder: encoder -> code -> mirrored decoder; denoising and sparse variants."""

    hidden_units: Annotated[list[PositiveInt], Field(max_length=10)]
    code_size: PositiveInt
    activation: Activation
    output_activation: Literal["sigmoid", "linear"]
    loss: Literal["mae", "mse", "binary_crossentropy"]
    noise_stddev: Annotated[float, Field(ge=0.0, le=10.0)]
    code_l1: Annotated[float, Field(ge=0.0, le=1.0)]


class Anomaly(Section):
    """How the reconstruction-error threshold is chosen (training and validation errors only)."""

    threshold_method: Literal["mean_std", "percentile", "max_f1"]
    k: Annotated[float, Field(ge=0.0, le=10.0)]
    percentile: Annotated[float, Field(gt=0.0, lt=100.0)]


class KerasCBOW(Section):
    """Training settings that only the Keras engine uses (gensim has its own ``alpha`` schedule)."""

    batch_size: PositiveInt
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)]


class CBOW(Section):
    """Word2Vec in CBOW mode (gensim, or the same model in Keras), and the probes reported after."""

    engine: Literal["gensim", "keras"]
    vector_size: Annotated[int, Field(ge=2, le=1000)]
    window: Annotated[int, Field(ge=1, le=50)]
    min_count: PositiveInt
    negative: Annotated[int, Field(ge=0, le=50)]
    hs: bool
    sample: Annotated[float, Field(ge=0.0, lt=1.0)]
    alpha: Annotated[float, Field(gt=0.0, le=1.0)]
    epochs: Annotated[int, Field(ge=1, le=1000)]
    workers: Annotated[int, Field(ge=1, le=64)]
    probe_words: list[str]
    probe_contexts: list[Annotated[list[str], Field(min_length=1)]]
    pca_words: Annotated[int, Field(ge=2, le=1000)]
    keras: KerasCBOW

    @model_validator(mode="after")
    def _needs_an_output_layer(self) -> CBOW:
        if self.negative == 0 and not self.hs:
            raise ParamsError(
                f"{PARAMS_FILE}: cbow.negative is 0 and cbow.hs is false; CBOW needs negative "
                "sampling (negative > 0) or hierarchical softmax (hs: true)"
            )
        return self


TransferBase = Literal[
    "pipeline", "efficientnet_lite0", "vgg16", "mobilenet_v2", "resnet50", "densenet121"
]


class Head(Section):
    """The new classifier put on top of a transferred base."""

    pooling: Literal["avg", "max", "flatten"]
    dense_units: Annotated[list[PositiveInt], Field(max_length=10)]
    dropout: Rate


class FineTune(Training):
    """Phase 2: unfreeze the base's top layers and train again with a low learning rate."""

    unfreeze: Annotated[int, Field(ge=0)]


class Transfer(Section):
    """Transfer learning: a pretrained base, a new head, fine-tuning, a from-scratch baseline."""

    base: TransferBase
    weights: str
    cut_at: str
    input_size: Annotated[
        list[Annotated[int, Field(ge=1, le=1024)]], Field(min_length=2, max_length=2)
    ]
    source_classes: Literal["auto"] | list[Label]
    target_classes: Literal["auto"] | Annotated[list[Label], Field(min_length=2)]
    target_train_size: PositiveInt | Literal["all"]
    repeats: Annotated[int, Field(ge=1, le=100)]
    # The from-scratch baseline: the same network with random weights, or lab 2's CNN (cnn.*),
    # far cheaper than a large ImageNet network on a CPU. Without the key: the same network.
    scratch: Literal["same", "cnn"] = "same"
    pretrain: Training
    trainable_base_layers: Annotated[int, Field(ge=0)]
    head: Head
    augment: Augment
    feature_extraction: Training
    fine_tune: FineTune

    @model_validator(mode="after")
    def _disjoint_classes(self) -> Transfer:
        if self.source_classes == "auto" or self.target_classes == "auto":
            return (
                self  # resolved against the data's classes (dllabs.labs.transfer.resolve_classes)
            )
        source = {str(c) for c in self.source_classes}
        shared = sorted(source & {str(c) for c in self.target_classes})
        if shared:
            raise ParamsError(
                f"{PARAMS_FILE}: transfer.source_classes and transfer.target_classes share "
                f"{', '.join(shared)}; the source task must be disjoint from the target"
            )
        if self.base == "pipeline" and len(source) < 2:
            raise ParamsError(
                f"{PARAMS_FILE}: transfer.source_classes needs at least 2 classes to pretrain "
                "the pipeline base on"
            )
        return self


class Params(Section):
    """The whole of ``params.yaml``."""

    base: Base
    data: Data
    tokenize: Tokenize
    mlp: MLP
    cnn: CNN
    autoencoder: Autoencoder
    anomaly: Anomaly
    cbow: CBOW
    transfer: Transfer


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate the whole params file; raise :class:`ParamsError` naming the bad key."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run the stages from the repository root")
    return validate_params(read_yaml(path), source=str(path))


def validate_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate an already-parsed mapping against :class:`Params`."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        # A misspelt key is both unknown and missing: report it as unknown, with a suggestion.
        errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
        message = _describe(errors)
        first_key = _key_and_model(errors[0]["loc"])[0]
        others = {_key_and_model(e["loc"])[0] for e in errors} - {first_key}
        more = f" (and {len(others)} more bad key(s))" if others else ""
        raise ParamsError(f"{source}: {message}{more}") from None


def _describe(errors: list[Any]) -> str:
    """Turn the pydantic errors of the first bad key into 'key: what is wrong; what is allowed'."""
    first = errors[0]
    key, section = _key_and_model(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        prefix, _, name = key.rpartition(".")
        valid = list(section.model_fields)
        hint = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
        where = f"{prefix}." if prefix else ""
        suggestion = (
            f"did you mean {where}{hint[0]}?" if hint else f"valid keys: {', '.join(valid)}"
        )
        return f"unknown key {key}; {suggestion}"
    if kind == "missing":
        return f"missing key {key}"
    value = first.get("input")
    if kind == "literal_error":
        allowed = first["ctx"]["expected"]
        hint = difflib.get_close_matches(str(value), _literal_options(allowed), n=1, cutoff=0.5)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"{key} = {value!r} is not allowed; expected one of {allowed}{suggestion}"
    # A union (e.g. int | str | None) fails once per member: say what each member wanted.
    wanted = [e["msg"] for e in errors if _key_and_model(e["loc"])[0] == key]
    reasons = " or ".join(dict.fromkeys(m[0].lower() + m[1:] for m in wanted))
    return f"{key} = {value!r}: {reasons}"


def _key_and_model(loc: tuple) -> tuple[str, type[BaseModel]]:
    """Dotted key path for a pydantic location, and the model holding its last key.

    Pydantic appends union-member tags (``int``, ``list[...]``) to locations; they are not keys.
    """
    parts: list[str] = []
    parent: type[BaseModel] = Params
    model: type[BaseModel] | None = Params
    for part in loc:
        if isinstance(part, int):
            if parts:
                parts[-1] += f"[{part}]"
            continue
        if model is None:
            break
        parts.append(part)
        parent = model
        field = model.model_fields.get(part)
        if field is None:
            break
        annotation = field.annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_section else None
    return ".".join(parts), parent


def _literal_options(expected: str) -> list[str]:
    return [part.strip(" '\"") for part in expected.replace(" or ", ", ").split(",")]


def read_yaml(path: str | Path, limit: int = MAX_PARAMS_BYTES) -> Any:
    """The YAML document in ``path`` as DVC reads params files (UTF-8, YAML 1.2, ruamel.yaml's
    safe loader), or :class:`ParamsError` in one line with the line and column at fault.

    Refused before the parser goes further: a file over ``limit`` bytes (checked before it is
    read), text that is not UTF-8, anchors and aliases (a few KB of nested aliases expand
    exponentially, in every reader after this one too), nesting past :data:`MAX_DEPTH`, and
    integers past :data:`MAX_INT_DIGITS`. As ever: no tag runs Python, a key must be a name, and a
    duplicate key is an error rather than the last one winning.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise ParamsError(f"{path}: not found")
        size = path.stat().st_size
        if size <= limit:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)  # the file may have grown since stat()
            size = len(data)
    except OSError as exc:
        raise ParamsError(os_error(exc, path)) from None
    if size > limit:
        raise ParamsError(_too_large(path, size, limit))
    return parse_yaml(_decode(data, path), str(path), limit)


def parse_yaml(text: str, source: str, limit: int = MAX_PARAMS_BYTES) -> Any:
    """:func:`read_yaml` for text already in memory (``source`` names it in errors)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.reader import ReaderError

    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise ParamsError(_too_large(source, size, limit))
    reader = YAML(typ="safe", pure=True)
    reader.Composer, reader.Constructor = _ruamel_classes()
    try:
        return reader.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(filter(None, (exc.context, exc.problem)))
        if getattr(exc, "refused", False):
            raise ParamsError(f"{source}{where}: {problem}") from None
        raise ParamsError(f"{source}: not valid YAML{where}: {' '.join(problem.split())}") from None
    except ReaderError as exc:
        line, column = _line_and_column(text, exc.position)
        raise ParamsError(
            f"{source}: not valid YAML at line {line}, column {column}: character "
            f"{exc.character!r} is not allowed in YAML"
        ) from None
    except YAMLError as exc:
        raise ParamsError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None


def _too_large(source: str | Path, size: int, limit: int) -> str:
    return (
        f"{source}: {size:,} bytes; a params file may hold at most {limit:,} "
        f"({limit // 1024} KB; the committed params.yaml is about 3 KB)"
    )


def _decode(data: bytes, path: Path) -> str:
    """``data`` as UTF-8, as DVC decodes params files; otherwise where the first bad byte is."""
    for name, boms in (
        ("UTF-32", (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)),
        ("UTF-16", (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)),
    ):
        if data.startswith(boms):
            raise ParamsError(f"{path}: {name} text; {_AS_UTF8}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ParamsError(
            f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column "
            f"{column}; {_AS_UTF8}"
        ) from None


_AS_UTF8 = "DVC reads params files as UTF-8: save it as UTF-8"


def _line_and_column(text: str, position: int) -> tuple[int, int]:
    return text.count("\n", 0, position) + 1, position - (text.rfind("\n", 0, position) + 1) + 1


@functools.cache
def _ruamel_classes() -> tuple[type, type]:
    """ruamel.yaml's composer and safe constructor, refusing what :func:`read_yaml` refuses: the
    composer as each node begins, before the parser reads further (ruamel.yaml is imported when
    the first file is read, not with this module)."""
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.constructor import SafeConstructor
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.events import AliasEvent
    from ruamel.yaml.nodes import MappingNode, ScalarNode

    class Refused(MarkedYAMLError):
        refused = True

    class RefusingComposer(Composer):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.parser.peek_event()
            if isinstance(event, AliasEvent) or event.anchor is not None:
                kind = "alias *" if isinstance(event, AliasEvent) else "anchor &"
                raise Refused(
                    problem=f"{kind}{event.anchor}; params files may not hold anchors or aliases "
                    "(nested ones expand exponentially): write the values out",
                    problem_mark=event.start_mark,
                )
            if self.depth >= MAX_DEPTH:
                raise Refused(
                    problem=f"nested more than {MAX_DEPTH} levels deep; params nest a few",
                    problem_mark=event.start_mark,
                )
            node = super().compose_node(parent, index)
            if isinstance(node, MappingNode):
                for key, _ in node.value:
                    if not isinstance(key, ScalarNode):  # `? [a, b]`, `? {a: 1}`
                        raise Refused(
                            problem=f"a key must be a name, not a {key.id}",
                            problem_mark=key.start_mark,
                        )
            return node

    class StrictConstructor(SafeConstructor):
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (ValueError, OverflowError) as exc:  # a date of 2024-02-30, say
                raise Refused(
                    problem=f"{str(node.value)[:60]!r}: {' '.join(str(exc).split())}",
                    problem_mark=node.start_mark,
                ) from None

        def construct_yaml_int(self, node: Any) -> int:
            # Python's own limit would raise a ValueError whose advice is to raise the limit.
            digits = len(str(node.value).strip().lstrip("+-").replace("_", ""))
            if digits > MAX_INT_DIGITS:
                raise Refused(
                    problem=f"an integer of {digits} digits; params hold at most {MAX_INT_DIGITS}",
                    problem_mark=node.start_mark,
                )
            return super().construct_yaml_int(node)

        def check_mapping_key(
            self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any
        ) -> bool:
            if key in mapping:
                raise Refused(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
            return True

    StrictConstructor.add_constructor("tag:yaml.org,2002:int", StrictConstructor.construct_yaml_int)
    return RefusingComposer, StrictConstructor
