"""Hugging Face pipeline tags as hubroute domains: ``"<Category> <Task>"``, as CMRBench names them."""

from __future__ import annotations

UNKNOWN_DOMAIN = "Unknown"

_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "Audio": (
        "audio-classification",
        "audio-to-audio",
        "automatic-speech-recognition",
        "text-to-audio",
        "text-to-speech",
        "voice-activity-detection",
    ),
    "Computer Vision": (
        "depth-estimation",
        "image-classification",
        "image-feature-extraction",
        "image-segmentation",
        "image-to-3d",
        "image-to-image",
        "image-to-text",
        "image-to-video",
        "keypoint-detection",
        "mask-generation",
        "object-detection",
        "text-to-3d",
        "text-to-image",
        "text-to-video",
        "unconditional-image-generation",
        "video-classification",
        "video-to-video",
        "zero-shot-image-classification",
        "zero-shot-object-detection",
    ),
    "Multimodal": (
        "any-to-any",
        "audio-text-to-text",
        "document-question-answering",
        "graph-ml",
        "image-text-to-text",
        "video-text-to-text",
        "visual-document-retrieval",
        "visual-question-answering",
    ),
    "Natural Language Processing": (
        "conversational",
        "feature-extraction",
        "fill-mask",
        "question-answering",
        "sentence-similarity",
        "summarization",
        "table-question-answering",
        "text-classification",
        "text-generation",
        "text-ranking",
        "text2text-generation",
        "token-classification",
        "translation",
        "zero-shot-classification",
    ),
    "Tabular": ("tabular-classification", "tabular-regression", "time-series-forecasting"),
    "Reinforcement Learning": ("reinforcement-learning", "robotics"),
}
_SPECIAL = {
    "image-to-3d": "Image-to-3D",
    "text-to-3d": "Text-to-3D",
    "text2text-generation": "Text2Text Generation",
    "graph-ml": "Graph Machine Learning",
    "any-to-any": "Any-to-Any",
}


def _task_name(tag: str) -> str:
    if tag in _SPECIAL:
        return _SPECIAL[tag]
    words = []
    for part in tag.split("-"):
        words.append(part.capitalize() if part not in ("to", "3d") else part)
    name = " ".join(words)
    # the task taxonomy writes "Image-to-Text" and "Zero-Shot"
    return name.replace(" to ", "-to-").replace("Zero Shot", "Zero-Shot")


PIPELINE_DOMAINS: dict[str, str] = {
    tag: f"{category} {_task_name(tag)}" for category, tags in _BY_CATEGORY.items() for tag in tags
}


def domain_of(pipeline_tag: str | None) -> str | None:
    """The domain of a pipeline tag (``automatic-speech-recognition`` -> ``Audio Automatic Speech
    Recognition``); an unlisted tag becomes ``Other <Task>``; None for no tag."""
    if not pipeline_tag:
        return None
    tag = pipeline_tag.strip().lower()
    return PIPELINE_DOMAINS.get(tag) or f"Other {_task_name(tag)}"
