"""Offline WordNet 3.0 for NLTK, and a cached lemmatiser.

    from mmlightning.images.wordnet import wordnet, lemmatize
    wn = wordnet()                       # nltk's WordNetCorpusReader, no download needed
    wn.synsets("dog", "n")[0].offset()   # 2084071 -> ImageNet wnid "n02084071"
    lemmatize("cats")                    # "cat"  (noun lemma, NLTK's WordNetLemmatizer, cached)
    hypernyms(wn.synset("milk.n.01"))    # [dairy_product.n.01, beverage.n.01]: wnid order, never set order

Where the data comes from, in order:
1. NLTK's own data (`nltk.download("wordnet")` or a `corpora/wordnet[.zip]` on `nltk.data.path`);
2. Debian's `wordnet-base` (`/usr/share/wordnet`, or `$MMLIGHTNING_WORDNET_DIR`): its files are linked
   into `<cache>/corpora/wordnet` together with the 45-line `lexnames` file that NLTK's reader wants and
   Debian does not ship (and an empty `index.sense`, see `layout_wordnet`), and `<cache>` is put on `nltk.data.path`. `<cache>` is `$MMLIGHTNING_CACHE/nltk_data`
   (default `~/.cache/mmlightning/nltk_data`).
Neither present: a `UserError` that says how to install one.

Every traversal here and in the image sources goes through `hypernyms` / `hyponyms` (wnid order): NLTK's
own `Synset.hypernyms()` follows set order, which changes with $PYTHONHASHSEED from run to run.
"""
from __future__ import annotations

import functools
import os
import shutil
import warnings
from pathlib import Path

from mmlightning.atomic import atomic_path, write_text
from mmlightning.errors import UserError

DEBIAN_WORDNET = Path("/usr/share/wordnet")
# The WordNet 3.0 lexicographer files, numbered as in the database's lex_filenum field
# (WordNet's lexnames(5WN) manual page). Format of each line: number TAB name TAB syntactic category.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change",
    "verb.cognition", "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social",
    "verb.stative", "verb.weather", "adj.ppl",
)
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
REQUIRED = ("data.noun", "index.noun", "data.verb", "index.verb", "data.adj", "index.adj",
            "data.adv", "index.adv")
INSTALL_HINT = ("install it with `apt-get install wordnet-base` (Debian/Ubuntu) or "
                "`python -c \"import nltk; nltk.download('wordnet')\"`, or point $MMLIGHTNING_WORDNET_DIR "
                "at a WordNet 3.0 dict/ folder")


def lexnames_text() -> str:
    """The content of WordNet's `lexnames` file (45 lines)."""
    return "".join(f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def cache_dir() -> Path:
    """Where the NLTK-style layout of Debian's WordNet is built."""
    base = os.environ.get("MMLIGHTNING_CACHE") or Path.home() / ".cache" / "mmlightning"
    return Path(base) / "nltk_data"


def _nltk_has_wordnet() -> bool:
    import nltk

    for name in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(name)
            return True
        except LookupError:
            pass
    return False


def layout_wordnet(source: Path, target: Path) -> Path:
    """Lay the WordNet database in `source` out as `target/corpora/wordnet`; return `target`.

    Files are copied once (28 MB; NLTK's path security refuses symlinks that leave its corpus root and
    multiply-linked files); `lexnames` is written when `source` lacks it.
    """
    missing = [f for f in REQUIRED if not (source / f).is_file()]
    if missing:
        raise UserError(f"{source}: not a WordNet database folder (missing {', '.join(missing)}); {INSTALL_HINT}")
    corpus = target / "corpora" / "wordnet"
    corpus.mkdir(parents=True, exist_ok=True)
    for f in sorted(source.iterdir()):
        if not f.is_file():
            continue
        link = corpus / f.name
        if not link.is_symlink() and link.is_file() and link.stat().st_nlink == 1 \
                and link.stat().st_size == f.stat().st_size:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        with atomic_path(link) as tmp:
            shutil.copyfile(f, tmp)
    if not (corpus / "lexnames").exists():
        write_text(corpus / "lexnames", lexnames_text())
    if not (corpus / "index.sense").exists():
        # NLTK opens index.sense at load time only to map other WordNet versions (OMW); an empty one
        # makes that mapping empty. `wn.lemma_from_key()` is the one thing that then does not work.
        write_text(corpus / "index.sense", "")
    return target


def ensure_wordnet() -> None:
    """Make `nltk.corpus.wordnet` loadable offline, or raise a UserError saying how to install WordNet."""
    import nltk

    if _nltk_has_wordnet():
        return
    source = Path(os.environ.get("MMLIGHTNING_WORDNET_DIR") or DEBIAN_WORDNET)
    if not source.is_dir():
        raise UserError(f"{source}: WordNet 3.0 not found (no NLTK wordnet data either); {INSTALL_HINT}")
    target = layout_wordnet(source, cache_dir())
    if str(target) not in nltk.data.path:
        nltk.data.path.insert(0, str(target))


@functools.lru_cache(maxsize=1)
def wordnet():
    """NLTK's WordNet corpus reader, loaded (from NLTK data or Debian's wordnet-base)."""
    ensure_wordnet()
    from nltk.corpus import wordnet as wn

    with warnings.catch_warnings():  # "multilingual functions are not available": OMW is not used here
        warnings.filterwarnings("ignore", message="The multilingual functions")
        wn.ensure_loaded()
    return wn


@functools.lru_cache(maxsize=1)
def lemmatizer():
    """A shared `nltk.stem.WordNetLemmatizer` over the offline WordNet."""
    wordnet()
    from nltk.stem import WordNetLemmatizer

    return WordNetLemmatizer()


@functools.lru_cache(maxsize=200_000)
def lemmatize(word: str, pos: str = "n") -> str:
    """The WordNet lemma of a lower-cased `word` (noun by default, as NLTK's lemmatizer does)."""
    word = word.lower()
    return lemmatizer().lemmatize(word, pos)


def wnid(synset) -> str:
    """ImageNet's id of a noun synset: 'n' + the 8-digit WordNet 3.0 offset."""
    return f"{synset.pos()}{synset.offset():08d}"


def by_offset(synsets) -> list:
    """Synsets sorted by (part of speech, offset), i.e. by ImageNet wnid: NLTK keeps a synset's pointers in
    a set, so `hypernyms()` & co. come in an order that changes with Python's hash seed."""
    return sorted(synsets, key=lambda s: (s.pos(), s.offset()))


def hypernyms(synset) -> list:
    """The hypernyms and instance hypernyms of `synset`, in wnid order (the same in every run)."""
    return by_offset(synset.hypernyms() + synset.instance_hypernyms())


def hyponyms(synset) -> list:
    """The hyponyms and instance hyponyms of `synset`, in wnid order (the same in every run)."""
    return by_offset(synset.hyponyms() + synset.instance_hyponyms())


@functools.lru_cache(maxsize=200_000)
def noun_senses(lemma: str) -> tuple:
    """The noun synsets of `lemma`, most frequent first: WordNet's order (by tagged count), except that
    among senses with equal counts one named after the word comes first ('heron' -> heron.n.02, the bird,
    before hero.n.04, Hero of Alexandria, also called Heron; both have count 0)."""
    word = lemma.replace(" ", "_")
    senses = wordnet().synsets(word, "n")

    def key(item):
        i, s = item
        count = sum(l.count() for l in s.lemmas() if l.name().lower() == word.lower())
        return -count, s.name().split(".")[0].lower() != word.lower(), i

    return tuple(s for _, s in sorted(enumerate(senses), key=key))


@functools.lru_cache(maxsize=200_000)
def first_noun_synset(lemma: str) -> str | None:
    """Name of the most frequent noun sense of `lemma` ('cat' -> 'cat.n.01'), None when it has none."""
    senses = noun_senses(lemma)
    return senses[0].name() if senses else None


@functools.lru_cache(maxsize=200_000)
def noun_ancestors(lemma: str) -> frozenset[str]:
    """The first noun sense of `lemma` and every synset above it (hypernyms and instance hypernyms, to
    entity.n.01), by name; a label belongs to the WordNet subtree of each of them. Empty for non-nouns."""
    name = first_noun_synset(lemma)
    if name is None:
        return frozenset()
    seen, stack = {name}, [wordnet().synset(name)]
    while stack:
        for parent in hypernyms(stack.pop()):
            if parent.name() not in seen:
                seen.add(parent.name())
                stack.append(parent)
    return frozenset(seen)
