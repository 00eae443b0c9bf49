"""A slice of the Hugging Face task taxonomy with per-domain vocabularies for the synthetic hub.

Each domain is ``"<Category> <Task>"`` as in CMRBench, with verbs and objects that build prompts,
and specialties that individual models are trained for (shared by their card and their prompts).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DomainVocab:
    """Words of one task domain: request verbs, input objects and model specialties."""

    domain: str
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    specialties: tuple[str, ...]


_GENERIC_SPECIALTIES = (
    "medical",
    "legal",
    "financial",
    "retail",
    "scientific",
    "news",
    "social media",
    "customer support",
    "education",
    "gaming",
    "automotive",
    "agriculture",
    "aviation",
    "energy",
    "insurance",
    "real estate",
    "sports",
    "music",
    "fashion",
    "cooking",
    "travel",
    "manufacturing",
    "pharmacy",
    "telecom",
)
_LANGUAGES = (
    "english",
    "spanish",
    "french",
    "german",
    "italian",
    "portuguese",
    "dutch",
    "russian",
    "chinese",
    "japanese",
    "korean",
    "arabic",
    "hindi",
    "turkish",
    "polish",
    "swedish",
    "finnish",
    "greek",
)


CATEGORIES: tuple[str, ...] = (
    "Natural Language Processing",
    "Computer Vision",
    "Multimodal",
    "Audio",
    "Tabular",
    "Reinforcement Learning",
)


def category_of(domain: str) -> str:
    """The top category of a ``"<Category> <Task>"`` domain (the first word if no category matches)."""
    for cat in CATEGORIES:
        if domain == cat or domain.startswith(cat + " "):
            return cat
    return domain.split(" ", 1)[0]


def task_of(domain: str) -> str:
    """The task part of a ``"<Category> <Task>"`` domain (the whole string if no category matches)."""
    for cat in CATEGORIES:
        if domain.startswith(cat + " "):
            return domain[len(cat) + 1 :]
    return domain


def _d(domain: str, verbs: str, objects: str, specialties: tuple[str, ...] = _GENERIC_SPECIALTIES) -> DomainVocab:
    return DomainVocab(domain, tuple(verbs.split(",")), tuple(objects.split(",")), specialties)


TAXONOMY: tuple[DomainVocab, ...] = (
    _d(
        "Natural Language Processing Translation",
        "translate,convert,render",
        "sentences,documents,messages,subtitles",
        _LANGUAGES,
    ),
    _d(
        "Natural Language Processing Summarization",
        "summarize,condense,shorten",
        "articles,reports,transcripts,threads",
    ),
    _d("Natural Language Processing Text Classification", "classify,categorize,label", "reviews,tweets,tickets,emails"),
    _d(
        "Natural Language Processing Token Classification",
        "tag,extract entities from,annotate",
        "sentences,contracts,records,notes",
    ),
    _d(
        "Natural Language Processing Question Answering",
        "answer questions about,query,look up facts in",
        "passages,manuals,wikis,faqs",
    ),
    _d(
        "Natural Language Processing Text Generation",
        "write,generate,draft",
        "stories,replies,product descriptions,code snippets",
    ),
    _d(
        "Natural Language Processing Fill-Mask",
        "complete,fill in,predict missing words of",
        "sentences,phrases,templates",
    ),
    _d(
        "Natural Language Processing Sentence Similarity",
        "compare,match,cluster",
        "sentences,queries,paraphrases,titles",
    ),
    _d(
        "Natural Language Processing Zero-Shot Classification", "sort,route,assign topics to", "requests,posts,articles"
    ),
    _d("Natural Language Processing Feature Extraction", "embed,vectorize,index", "documents,queries,paragraphs"),
    _d("Computer Vision Image Classification", "classify,recognize,identify", "photos,images,pictures,scans"),
    _d(
        "Computer Vision Object Detection",
        "detect,locate,count",
        "objects in photos,vehicles in footage,items on shelves",
    ),
    _d(
        "Computer Vision Image Segmentation",
        "segment,outline,mask",
        "regions in images,organs in scans,roads in aerial photos",
    ),
    _d(
        "Computer Vision Depth Estimation",
        "estimate depth of,measure distance in,reconstruct depth from",
        "scenes,photos,indoor images",
    ),
    _d("Computer Vision Image-to-Text", "caption,describe,read text in", "photos,screenshots,receipts,diagrams"),
    _d("Computer Vision Image-to-Image", "restyle,enhance,upscale", "photos,sketches,portraits,renders"),
    _d("Computer Vision Video Classification", "classify,recognize actions in,tag", "videos,clips,recordings"),
    _d("Multimodal Text-to-Image", "draw,generate an image of,illustrate", "scenes,characters,landscapes,logos"),
    _d("Multimodal Visual Question Answering", "answer questions about,inspect,explain", "images,charts,photos"),
    _d("Multimodal Document Question Answering", "extract answers from,query,read", "invoices,forms,pdf documents"),
    _d(
        "Audio Automatic Speech Recognition",
        "transcribe,convert to text,caption",
        "recordings,voicemails,podcasts,calls",
        _LANGUAGES,
    ),
    _d("Audio Text-to-Speech", "speak,read aloud,synthesize speech for", "announcements,articles,dialogue", _LANGUAGES),
    _d("Audio Audio Classification", "classify,detect,recognize", "sounds,recordings,audio clips,alarms"),
    _d("Audio Voice Activity Detection", "detect speech in,find speakers in,segment", "recordings,meetings,calls"),
    _d("Tabular Tabular Classification", "predict,classify,score", "customer records,transactions,loan applications"),
    _d("Tabular Tabular Regression", "forecast,estimate,predict values of", "prices,sales,sensor readings"),
    _d("Reinforcement Learning Reinforcement Learning", "control,play,navigate", "games,robots,simulations"),
)

ADJECTIVES = (
    "swift",
    "bright",
    "deep",
    "tiny",
    "mega",
    "neural",
    "quantum",
    "rapid",
    "clever",
    "bold",
    "calm",
    "keen",
    "lucid",
    "prime",
    "sharp",
    "silent",
    "solid",
    "vivid",
    "agile",
    "noble",
    "polar",
    "lunar",
    "solar",
    "sonic",
)
NOUNS = (
    "falcon",
    "otter",
    "lynx",
    "heron",
    "badger",
    "cobra",
    "raven",
    "tiger",
    "panda",
    "koala",
    "orca",
    "gecko",
    "mantis",
    "bison",
    "crane",
    "ferret",
    "jaguar",
    "marten",
    "osprey",
    "puffin",
    "quokka",
    "stoat",
    "tapir",
    "wombat",
)
SIZES = ("tiny", "small", "base", "large", "xl")
ORGS = ("acme-ai", "openlab", "datafolk", "nlpworks", "visionhub", "soundbase", "tabular-co", "hubtest")
