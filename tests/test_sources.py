"""Image sources on small synthetic copies of each layout: ImageNet, ESP, folder, Tux Paint, OpenClipart."""
import shutil
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import in_thread
from mmlightning.errors import UserError
from mmlightning.images.sources import open_source
from mmlightning.images.sources.base import (ImageRef, content_lemmas, interleave_groups, select_by_labels, tokens,
                                      walk_files, word_rng)
from mmlightning.images.sources.imageio import ImageError, load_image

HAS_RSVG = shutil.which("rsvg-convert") is not None


def img(path: Path, size=(8, 6), color=(200, 10, 10, 255), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "JPEG" or path.suffix.lower() in (".jpg", ".jpeg"):
        color = color[:3]
    mode = "RGBA" if len(color) == 4 else "RGB"
    Image.new(mode, size, color).save(path, format=fmt)
    return path


SVG = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 width="40" height="20"><metadata><rdf:RDF><cc:Work rdf:about="">
 <dc:title>{title}</dc:title><dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>
 <dc:creator><cc:Agent><dc:title>{author}</dc:title></cc:Agent></dc:creator>
 </cc:Work></rdf:RDF></metadata><rect width="40" height="20" fill="#0000ff"/></svg>"""


def svg(path: Path, title="", keywords=(), author="Jane Doe") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kws = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    path.write_text(SVG.format(title=title, keywords=kws, author=author))
    return path


# ---------------------------------------------------------------- shared rules


def test_tokens_drop_numbers_and_split_names():
    assert tokens("Woman Police 02, blue_fedora-hat x") == ["woman", "police", "blue", "fedora", "hat"]
    assert tokens("dinosaurSings 6x7=42 Grandma's flower7") == ["dinosaur", "sings", "grandma", "flower"]
    assert content_lemmas("A cup of coffee with two cats.", str.lower) == {"cup", "coffee", "cats"}


def test_interleave_spreads_over_groups_and_caps():
    refs = [ImageRef(f"a/{i}", group="a") for i in range(10)] + [ImageRef(f"b/{i}", group="b") for i in range(2)]
    out = interleave_groups(refs, word_rng(0, "w"))
    assert {r.group for r in out[:2]} == {"a", "b"} and {r.group for r in out[2:4]} == {"a", "b"}
    assert len(interleave_groups(refs, word_rng(0, "w"), max_per_group=3)) == 5


def test_select_by_labels_n_seed_and_stability():
    refs = [ImageRef(f"img{i}", frozenset({"cat"} if i % 2 else {"dog"}), group=str(i % 3)) for i in range(40)]
    a = select_by_labels(refs, ["cats", "dog", "emu"], n_per_word=5, seed=1, lemma=lambda w: w.rstrip("s"))
    assert len(a.by_word["cats"]) == 5 and all("cat" in r.labels for r in a.by_word["cats"])
    assert len({r.path for r in a.by_word["dog"]}) == 5
    assert "emu" in a.missing and "emu" not in a.by_word
    b = select_by_labels(refs, ["cat", "dog"], n_per_word=5, seed=1)
    assert a.by_word["dog"] == b.by_word["dog"]            # same seed, same images
    c = select_by_labels(refs, ["dog"], n_per_word=5, seed=1)
    assert c.by_word["dog"] == a.by_word["dog"]            # other words do not change a word's sample
    seeds = {tuple(r.path for r in select_by_labels(refs, ["dog"], 5, s).by_word["dog"]) for s in range(5)}
    assert len(seeds) > 1                                   # the seed matters
    assert len(select_by_labels(refs, ["dog"], 100, 0).by_word["dog"]) == 20  # N caps, never pads


def test_select_by_labels_subtree_follows_wordnet():
    from mmlightning.images.wordnet import lemmatize

    labels = {"tabby": {"cat"}, "puppy": {"dog"}, "heron": {"heron", "blue"}, "sedan": {"car"}, "lemon": {"lemon"}}
    refs = [ImageRef(f"{name}{i}.png", frozenset(labs), group=name) for name, labs in labels.items() for i in range(2)]
    words = ["animals", "feline", "fruit", "color", "car", "vehicle", "idea"]
    flat = select_by_labels(refs, words, 10, 0, lemma=lemmatize)
    assert set(flat.by_word) == {"car"} and "words_with_subtree_images" not in flat.notes
    sel = select_by_labels(refs, words, 10, 0, lemma=lemmatize, subtree=True)
    names = {w: {r.group for r in refs_} for w, refs_ in sel.by_word.items()}
    assert names == {"animals": {"tabby", "puppy", "heron"}, "feline": {"tabby"}, "fruit": {"lemon"},
                     "color": {"heron"}, "car": {"sedan"}, "vehicle": {"sedan"}}  # 'blue' is a colour
    assert "idea" in sel.missing and "below it in WordNet" in sel.missing["idea"]
    assert sel.notes["words_with_subtree_images"] == 5  # every word but 'car' gained images from below
    assert len(select_by_labels(refs, ["animal"], 3, 0, lemma=lemmatize, subtree=True).by_word["animal"]) == 3


def test_walk_files_lists_unreadable_folders(tmp_path):
    skipped = []
    assert walk_files(tmp_path / "missing", (".png",), skipped) == []
    assert skipped and skipped[0]["reason"].startswith("unreadable folder")


# ---------------------------------------------------------------- ImageNet

HIERARCHY = [("n00000100", "n00000110"), ("n00000110", "n00000111"), ("n00000110", "n00000112"),
             ("n00000100", "n00000120"), ("n00000100", "n00000130"), ("n00000100", "n00000140")]
WORDS = {"n00000100": "animal, beast", "n00000110": "dog, domestic dog", "n00000111": "puppy",
         "n00000112": "hound, dog", "n00000120": "cat", "n00000130": "bird", "n00000140": "unicorn",
         "n00000900": "ghost"}


@pytest.fixture
def imagenet(tmp_path):
    root = tmp_path / "imagenet"
    (root / "train").mkdir(parents=True)
    (root / "wordnet.is_a.txt").write_text("".join(f"{p} {c}\n" for p, c in HIERARCHY))
    (root / "words.txt").write_text("".join(f"{w}\t{lem}\n" for w, lem in WORDS.items()))
    counts = {"n00000100": 1, "n00000110": 2, "n00000111": 3, "n00000112": 2}
    for wnid, n in counts.items():
        for i in range(n):
            img(root / "train" / wnid / f"{wnid}_{i}.JPEG", color=(i * 20, 0, 0), fmt="JPEG")
    # cat: one tar per synset, the other layout ImageNet is distributed in
    src = tmp_path / "cat_src"
    with tarfile.open(root / "train" / "n00000120.tar", "w") as tar:
        for i in range(5):
            tar.add(img(src / f"n00000120_{i}.JPEG", fmt="JPEG"), arcname=f"n00000120_{i}.JPEG")
    (root / "train" / "n00000140.tar").write_bytes(b"not a tar archive")  # unreadable synset archive
    return root


def wnids_of(refs):
    return [r.label for r in refs]


def test_imagenet_subtree_sampling(imagenet):
    sel = open_source("imagenet", str(imagenet)).candidates(["dog"], n_per_word=5, seed=0)
    refs = sel.by_word["dog"]
    assert len(refs) == len({r.path for r in refs}) == 5
    assert set(wnids_of(refs)) <= {"n00000110", "n00000111", "n00000112"}   # the dog subtree only
    assert sel.notes["words"]["dog"]["subtree_images"] == 7
    assert "backoff" not in sel.notes["words"]["dog"]


def test_imagenet_hypernym_backoff(imagenet):
    src = open_source("imagenet", str(imagenet))
    sel = src.candidates(["dog", "bird", "puppies"], n_per_word=10, seed=0)
    dog = sel.by_word["dog"]
    assert len(dog) == 10                                    # 7 of its own + 3 from the animal subtree
    own = [r for r in dog if r.label in {"n00000110", "n00000111", "n00000112"}]
    assert len(own) == 7
    assert {r.label for r in dog} - {r.label for r in own} <= {"n00000100", "n00000120"}
    assert sel.notes["words"]["dog"]["backoff"] == "n00000100"
    bird = sel.by_word["bird"]                               # no image of its own: the hypernym's subtree
    assert len(bird) == 10 and sel.notes["words"]["bird"]["subtree_images"] == 0
    assert len(sel.by_word["puppies"]) == 7                  # lemmatised to puppy; the dog subtree has only 7
    assert {r.label for r in sel.by_word["puppies"]} <= {"n00000110", "n00000111", "n00000112"}


def test_imagenet_no_backoff_missing_words_and_bad_archive(imagenet):
    src = open_source("imagenet", str(imagenet), backoff=False)
    sel = src.candidates(["bird", "zebra", "ghost", "unicorn", "cat"], n_per_word=3, seed=0)
    assert sel.missing["zebra"] == "no noun synset"
    assert "no image in the subtree" in sel.missing["bird"]
    assert "ghost" in sel.missing                            # in words.txt, outside the hierarchy, no images
    assert "unicorn" in sel.missing
    assert any("n00000140.tar" in s["path"] and "unreadable" in s["reason"] for s in sel.skipped)
    cat = sel.by_word["cat"]                                 # read from the synset's tar
    assert len(cat) == 3 and all("::" in r.path for r in cat)
    assert load_image(cat[0]).mode == "RGB"


def test_imagenet_seeds_and_senses(imagenet):
    src = open_source("imagenet", str(imagenet))
    draw = lambda seed: [r.path for r in src.candidates(["dog"], 3, seed).by_word["dog"]]
    assert draw(4) == draw(4)
    assert len({tuple(draw(s)) for s in range(6)}) > 1
    first = open_source("imagenet", str(imagenet), backoff=False).candidates(["hound"], 10, 0)
    assert {r.label for r in first.by_word["hound"]} == {"n00000112"}
    both = open_source("imagenet", str(imagenet), all_senses=True).candidates(["dog"], 10, 0)
    assert both.notes["words"]["dog"]["synsets"] == ["n00000110", "n00000112"]


def test_imagenet_bad_hierarchy_file(imagenet):
    (imagenet / "wordnet.is_a.txt").write_text("n00000100 n00000110\nn00000100\n")
    with pytest.raises(UserError, match=r"wordnet.is_a.txt:2: expected"):
        open_source("imagenet", str(imagenet))
    with pytest.raises(UserError, match="needs a root"):
        open_source("imagenet")


def test_imagenet_hierarchy_derived_from_wordnet(tmp_path):
    for wnid in ("n02084071", "n02088238"):  # dog, basset (a hound, below dog)
        img(tmp_path / "train" / wnid / f"{wnid}_1.JPEG", fmt="JPEG")
    src = open_source("imagenet", str(tmp_path))
    sel = src.candidates(["dog", "hound", "cad"], n_per_word=5, seed=0)
    assert {r.label for r in sel.by_word["dog"]} == {"n02084071", "n02088238"}
    assert sel.notes["words"]["dog"]["synsets"] == ["n02084071"]
    assert sel.notes["words"]["hound"]["synsets"] == ["n02087551"]          # first sense
    assert "backoff" in sel.notes["words"]["hound"]                         # 1 image < 5: widen to hound's hypernym
    assert sel.notes["words"]["hound"]["subtree_images"] == 1


# Words whose first sense has two hypernyms; NLTK lists them in hash-seed order (issue 15.2).
TWO_PARENTS = {"milk": ("n07844042", ["n07843775", "n07881800"]),         # dairy product, beverage
               "film": ("n06613686", ["n04007894", "n06619065"]),         # product, show
               "gravestone": ("n03455488", ["n03743902", "n04326084"]),   # memorial, stone
               "aquarium": ("n02732072", ["n04388743", "n04539203"])}     # tank, vivarium
SELECT = """
import json, sys
from mmlightning.images.sources import open_source
sel = open_source("imagenet", sys.argv[1]).candidates(sys.argv[2:], n_per_word=2, seed=0)
print(json.dumps({w: [sel.notes["words"][w].get("backoff"), [r.path for r in sel.by_word[w]]] for w in sys.argv[2:]}))
"""


def test_imagenet_backoff_does_not_depend_on_the_hash_seed(tmp_path):
    import json
    import os
    import subprocess
    import sys

    for own, parents in TWO_PARENTS.values():  # WordNet's hierarchy: one image per synset, back-off needed
        for wnid in (own, *parents):
            img(tmp_path / "train" / wnid / f"{wnid}_1.JPEG", fmt="JPEG")
    procs = [subprocess.Popen([sys.executable, "-c", SELECT, str(tmp_path), *TWO_PARENTS], text=True,
                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONHASHSEED": seed})
             for seed in ("1", "2")]
    runs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert runs[0] == runs[1]
    assert {w: runs[0][w][0] for w in TWO_PARENTS} == {w: parents[0] for w, (_, parents) in TWO_PARENTS.items()}


# ---------------------------------------------------------------- ESP, folder


def test_esp_tags_lemmatised_and_bad_label_files(tmp_path):
    img(tmp_path / "images" / "1.jpg", fmt="JPEG")
    img(tmp_path / "images" / "2.jpg", fmt="JPEG")
    img(tmp_path / "images" / "3.jpg", fmt="JPEG")
    img(tmp_path / "images" / "4.jpg", fmt="JPEG")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "1.jpg.desc").write_text("dogs\ngrass\n\n")
    (tmp_path / "labels" / "2.desc").write_text("Dog\nsky\n")
    (tmp_path / "labels" / "3.jpg.desc").write_bytes(b"caf\xe9\n")
    sel = open_source("esp", str(tmp_path)).candidates(["dog", "grasses", "sky", "cafe"], 10, 0)
    assert sorted(Path(r.path).name for r in sel.by_word["dog"]) == ["1.jpg", "2.jpg"]
    assert [Path(r.path).name for r in sel.by_word["grasses"]] == ["1.jpg"]
    reasons = {Path(s["path"]).name: s["reason"] for s in sel.skipped}
    assert "not UTF-8" in reasons["3.jpg"] and "3.jpg.desc" in reasons["3.jpg"]
    assert "no label file" in reasons["4.jpg"]
    assert "cafe" in sel.missing
    assert sel.notes["layout"] == "plain"


@pytest.mark.parametrize("images, labels, layout", [
    ("originals", "labels", "ESPGame100k"),    # + thumbnails/, which is not read
    ("images", "LABELS", "ESP-ImageSet"),
])
def test_esp_public_layouts(tmp_path, images, labels, layout):
    root = tmp_path / "esp"
    for n, tags in ((0, "dog\ngrass\n"), (1, "cat\n"), (2, "dogs\nsky\n")):
        img(root / images / f"{n}.jpg", fmt="JPEG")
        img(root / "thumbnails" / f"{n}.jpg", size=(4, 3), fmt="JPEG")
        (root / labels).mkdir(exist_ok=True)
        (root / labels / f"{n}.jpg.desc").write_text(tags)
    img(root / images / "3.jpg", fmt="JPEG")  # no tag file
    sel = open_source("esp", str(root)).candidates(["dog", "cat", "horse"], 10, 0)
    assert sorted(r.path for r in sel.by_word["dog"]) == [str(root / images / "0.jpg"), str(root / images / "2.jpg")]
    assert [Path(r.path).name for r in sel.by_word["cat"]] == ["1.jpg"]
    assert not any("thumbnails" in r.path for refs in sel.by_word.values() for r in refs)
    assert sel.notes["layout"] == layout and sel.notes["images"] == 3
    assert [Path(s["path"]).name for s in sel.skipped] == ["3.jpg"]
    assert f"{labels}/3.jpg.desc" in sel.skipped[0]["reason"]
    assert "horse" in sel.missing


def test_esp_unknown_layout_is_one_line(tmp_path):
    (tmp_path / "pictures").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(UserError) as e:
        open_source("esp", str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path}: not an ESP Game folder")
    assert "originals/ + labels/ (ESPGame100k)" in msg and "images/ + LABELS/ (ESP-ImageSet)" in msg
    with pytest.raises(UserError, match="no such folder"):
        open_source("esp", str(tmp_path / "nope"))


def test_folder_source(tmp_path):
    for i in range(3):
        img(tmp_path / "cats" / f"{i}.png")
    img(tmp_path / "cats" / "kittens" / "k.png")
    img(tmp_path / "Dog" / "d.jpg", fmt="JPEG")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    sel = open_source("folder", str(tmp_path)).candidates(["cat", "dog", "bird"], n_per_word=2, seed=0)
    assert len(sel.by_word["cat"]) == 2
    assert {Path(r.path).parent.name for r in sel.by_word["cat"]} == {"cats", "kittens"}  # spread over folders
    assert [Path(r.path).name for r in sel.by_word["dog"]] == ["d.jpg"]
    assert "bird" in sel.missing
    with pytest.raises(UserError, match="no such folder"):
        open_source("folder", str(tmp_path / "nope"))


# ---------------------------------------------------------------- Tux Paint


@pytest.fixture
def stamps(tmp_path):
    root = tmp_path / "stamps"
    img(root / "animals" / "cat.png")
    (root / "animals" / "cat.txt").write_text("A fluffy cat, purring.\nfr.utf8=Un chat.\n")
    svg(root / "vehicles" / "blue_truck2.svg")
    (root / "vehicles" / "blue_truck2.txt").write_text("Always remember to bring soap for the big truck!\n")
    img(root / "food" / "apple.png")
    svg(root / "food" / "apple.svg")
    img(root / "food" / "pear.png")
    (root / "food" / "pear.txt").write_bytes(b"A p\xe9ar\n")
    return root


def test_tuxpaint_labels(stamps):
    src = open_source("tuxpaint", str(stamps))
    skipped = []
    labels = {Path(r.path).name: r.labels for r in src.images(skipped)}
    assert labels["cat.png"] == {"cat"}                       # 'fluffy' (adjective) and 'purring' dropped
    assert labels["blue_truck2.svg"] == {"blue", "truck"}     # name without '2'; a chatty description ignored
    assert labels["apple.png"] == {"apple"}                   # PNG preferred, SVG kept as the fallback
    assert labels["pear.png"] == {"pear"}
    assert any("not UTF-8" in s["reason"] for s in skipped)
    nouns = {Path(r.path).name: r.labels for r in open_source("tuxpaint", str(stamps), description="nouns").images([])}
    assert nouns["blue_truck2.svg"] == {"blue", "truck", "soap"}
    every = {Path(r.path).name: r.labels for r in open_source("tuxpaint", str(stamps), description="all").images([])}
    assert every["cat.png"] == {"cat", "fluffy", "purring"}
    assert every["blue_truck2.svg"] == {"blue", "truck", "soap", "remember", "always", "bring", "big"}
    longer = open_source("tuxpaint", str(stamps), max_description_words=6).images([])
    assert {Path(r.path).name: r.labels for r in longer}["blue_truck2.svg"] == {"blue", "truck", "soap"}
    assert open_source("tuxpaint", str(stamps), description="none").images([])[-1].labels == {"truck", "blue"}
    sel = src.candidates(["cats", "trucks", "soap", "dog"], 5, 0)
    assert [Path(r.path).name for r in sel.by_word["trucks"]] == ["blue_truck2.svg"]
    assert "dog" in sel.missing and "soap" in sel.missing
    with pytest.raises(UserError, match="description must be one of"):
        open_source("tuxpaint", str(stamps), description="verbs")
    with pytest.raises(UserError, match="option subtree must be true or false, got 'yes please'"):
        open_source("tuxpaint", str(stamps), subtree="yes please")
    tree = open_source("tuxpaint", str(stamps), subtree=True).candidates(["animal", "fruit", "vehicle"], 5, 0)
    assert {w: sorted(Path(r.path).name for r in refs) for w, refs in tree.by_word.items()} == {
        "animal": ["cat.png"], "fruit": ["apple.png", "pear.png"], "vehicle": ["blue_truck2.svg"]}


@pytest.mark.skipif(not HAS_RSVG, reason="needs rsvg-convert (librsvg2-bin)")
def test_svg_stamp_is_rendered_on_white(stamps):
    ref = ImageRef(str(stamps / "vehicles" / "blue_truck2.svg"))
    im = load_image(ref, max_side=64)
    assert im.mode == "RGB" and im.size == (64, 32)
    assert im.getpixel((10, 10)) == (0, 0, 255)


# ---------------------------------------------------------------- OpenClipart


@pytest.fixture
def clipart(tmp_path):
    root = tmp_path / "openclipart"

    def clip(rel, title, keywords=(), author="Jane Doe", png=True):
        if png:
            img(root / "png" / f"{rel}.png")
        svg(root / "svg" / f"{rel}.svg", title, keywords, author)

    clip("animals/mammals/dog_jane_doe_01", "Happy Dog 02", ["mammal", "dog", "hash", "mammals"])
    clip("animals/mammals/cow_01", "Clipart by Nicu Buculei - cow", ["mammal", "hash"], author="Nicu Buculei")
    clip("animals/birds/parrot_rollandin_01", "Pappagallo", ["architetto francesco rollandin", "bird"],
         author="Architetto Francesco Rollandin")
    for i in range(3):
        clip(f"shapes/stars/star_{i}", "gramastar", ["stars", "hash"])
    clip("people/man_01", "Man with apple", ["people", "man", "apple", "a", "b", "c", "d", "e", "f", "g",
                                             "h", "i", "j", "k"])
    clip("food/fruit/apple_01", "Red apple", ["fruit", "united_nations_member"])
    img(root / "png" / "food" / "nometa.png")
    (root / "png" / "animals" / "favourites").mkdir(parents=True)
    (root / "png" / "animals" / "favourites" / "dog.png").symlink_to(root / "png/animals/mammals/dog_jane_doe_01.png")
    return root


def test_openclipart_label_rules(clipart):
    src = open_source("openclipart", str(clipart), max_keyword_files=3, max_title_files=2)
    skipped = []
    refs = src.images(skipped)
    labels = {Path(r.path).stem: r.labels for r in refs}
    assert len(refs) == 8                                      # the symlinked duplicate counts once
    assert labels["dog_jane_doe_01"] == {"happy", "dog", "mammal"}   # 'hash' tags > 3 files; no '02'; no folder
    assert labels["cow_01"] == {"cow", "mammal"}              # the author's name removed from the title
    assert labels["parrot_rollandin_01"] == {"pappagallo", "bird"}
    assert labels["star_0"] == frozenset()                    # collection title, folder-name keyword, tags
    assert labels["man_01"] == {"man", "apple"}               # too many keywords: title only
    assert labels["apple_01"] == {"red", "apple"}             # 'fruit' is its folder; multi-word tag not split
    assert any(s["path"].endswith("nometa.png") and "no SVG metadata" in s["reason"] for s in skipped)
    assert all(r.fallback_svg and r.fallback_svg.endswith(".svg") for r in refs)
    sel = src.candidates(["apples", "star", "nation", "mammal"], 5, 0)
    assert len(sel.by_word["apples"]) == 2
    assert "star" in sel.missing and "nation" in sel.missing
    capped = open_source("openclipart", str(clipart), max_per_group=1).candidates(["mammal"], 5, 0)
    assert len(capped.by_word["mammal"]) == 1                 # one folder cannot fill a word


def test_huge_png_rendered_from_svg_or_skipped(clipart):
    png = clipart / "png/food/fruit/apple_01.png"
    img(png, size=(400, 200))
    ref = ImageRef(str(png), fallback_svg=str(clipart / "svg/food/fruit/apple_01.svg"))
    with pytest.raises(ImageError, match="too large"):
        load_image(ImageRef(str(png)), max_side=32, max_pixels=1000)
    if HAS_RSVG:
        im = load_image(ref, max_side=32, max_pixels=1000)     # rendered from the SVG at the target size
        assert im.size == (32, 16) and im.getpixel((5, 5)) == (0, 0, 255)


def test_undecodable_and_transparent_images(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(ImageRef(str(bad)))
    clear = img(tmp_path / "clear.png", size=(1000, 10), color=(255, 0, 0, 0))
    im = load_image(ImageRef(str(clear)), max_side=100)
    assert im.mode == "RGB" and im.size == (100, 1) and im.getpixel((0, 0)) == (255, 255, 255)


# ---------------------------------------------------------------- hostile inputs (issue 22)

BOM = b"\xef\xbb\xbf"


def test_item08_label_files_with_a_bom_keep_their_first_tag(tmp_path):
    """ESP .desc, ImageNet words.txt / wordnet.is_a.txt and Tux Paint descriptions saved with a UTF-8 BOM."""
    esp = tmp_path / "esp"
    img(esp / "images" / "1.jpg", fmt="JPEG")
    (esp / "labels").mkdir()
    (esp / "labels" / "1.jpg.desc").write_bytes(BOM + b"dog\ngrass\n")
    sel = open_source("esp", str(esp)).candidates(["dog", "grass"], 10, 0)
    assert [Path(r.path).name for r in sel.by_word.get("dog", [])] == ["1.jpg"] and not sel.skipped
    assert [Path(r.path).name for r in sel.by_word.get("grass", [])] == ["1.jpg"]

    net = tmp_path / "imagenet"
    img(net / "train" / "n00000110" / "a.JPEG", fmt="JPEG")
    img(net / "train" / "n00000111" / "b.JPEG", fmt="JPEG")
    (net / "wordnet.is_a.txt").write_bytes(BOM + b"n00000110 n00000111\n")
    (net / "words.txt").write_bytes(BOM + b"n00000110\tdog\nn00000111\tpuppy\n")
    sel = open_source("imagenet", str(net), backoff=False).candidates(["dog"], 10, 0)
    assert {r.label for r in sel.by_word.get("dog", [])} == {"n00000110", "n00000111"}

    stamps = tmp_path / "stamps"
    img(stamps / "food" / "thing.png")
    (stamps / "food" / "thing.txt").write_bytes(BOM + "A lemon.\n".encode())
    labels = open_source("tuxpaint", str(stamps)).images([])[0].labels
    assert labels == {"thing", "lemon"}


def test_item_minor_empty_esp_label_file_is_a_counted_skip(tmp_path):
    img(tmp_path / "images" / "1.jpg", fmt="JPEG")
    img(tmp_path / "images" / "2.jpg", fmt="JPEG")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "1.jpg.desc").write_text("dog\n")
    (tmp_path / "labels" / "2.jpg.desc").write_text("\n  \n")
    sel = open_source("esp", str(tmp_path)).candidates(["dog"], 10, 0)
    assert [Path(r.path).name for r in sel.by_word["dog"]] == ["1.jpg"]
    assert [(Path(s["path"]).name, "empty label file" in s["reason"]) for s in sel.skipped] == [("2.jpg", True)]


def _release_fifo(fifo: Path) -> None:
    """Unblock a reader stuck opening `fifo` (a regression): open it for writing and close it at once."""
    import os

    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def call_with_timeout(fn, fifos=(), timeout=120.0):
    """fn() in a daemon thread; fails (and frees a reader stuck on `fifos`) when it has not returned in time."""
    t, box = in_thread(fn)
    t.join(timeout)
    if t.is_alive():
        for fifo in fifos:
            _release_fifo(fifo)
        t.join(5)
        pytest.fail(f"did not return within {timeout} s (blocked on a FIFO?)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def special_files(folder: Path, stem: str, ext: str = ".png") -> tuple[Path, Path]:
    """A FIFO and a symlink to /dev/zero named like images in `folder`."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / f"{stem}_fifo{ext}"
    os.mkfifo(fifo)
    (folder / f"{stem}_zero{ext}").symlink_to("/dev/zero")
    return fifo, folder / f"{stem}_zero{ext}"


def assert_special_skipped(refs, skipped, *paths):
    listed = {Path(r.path).name for r in refs}
    reasons = {Path(s["path"]).name: s["reason"] for s in skipped}
    for p in paths:
        assert p.name not in listed
        assert "not a regular file" in reasons.get(p.name, ""), (p.name, reasons)


def test_item12_sources_list_only_regular_files(tmp_path):
    """A FIFO or a link to a device named like an image is a counted skip in every source; a link to a file is kept."""
    folder = tmp_path / "folder"
    img(folder / "cat" / "1.png")
    img(tmp_path / "elsewhere" / "2.png")
    (folder / "cat" / "2.png").symlink_to(tmp_path / "elsewhere" / "2.png")
    bad = special_files(folder / "cat", "zz")
    sel = open_source("folder", str(folder)).candidates(["cat"], 10, 0)
    assert sorted(Path(r.path).name for r in sel.by_word["cat"]) == ["1.png", "2.png"]
    assert_special_skipped(sel.by_word["cat"], sel.skipped, *bad)

    esp = tmp_path / "esp"
    img(esp / "images" / "1.jpg", fmt="JPEG")
    bad = special_files(esp / "images", "zz", ".jpg")
    (esp / "labels").mkdir()
    for name in ("1.jpg", *(p.name for p in bad)):
        (esp / "labels" / f"{name}.desc").write_text("dog\n")
    fifo_desc = esp / "labels" / "2.jpg.desc"
    img(esp / "images" / "2.jpg", fmt="JPEG")
    __import__("os").mkfifo(fifo_desc)
    sel = call_with_timeout(lambda: open_source("esp", str(esp)).candidates(["dog"], 10, 0), [fifo_desc])
    assert [Path(r.path).name for r in sel.by_word["dog"]] == ["1.jpg"]
    assert_special_skipped(sel.by_word["dog"], sel.skipped, *bad)
    assert any(s["path"].endswith("2.jpg") and "not a regular file" in s["reason"] for s in sel.skipped)

    stamps = tmp_path / "stamps"
    img(stamps / "animals" / "cat.png")
    bad = special_files(stamps / "animals", "dog")
    skipped = []
    refs = open_source("tuxpaint", str(stamps)).images(skipped)
    assert [Path(r.path).name for r in refs] == ["cat.png"]
    assert_special_skipped(refs, skipped, *bad)

    clip = tmp_path / "openclipart"
    img(clip / "png" / "animals" / "cat.png")
    svg(clip / "svg" / "animals" / "cat.svg", "cat")
    bad = special_files(clip / "png" / "animals", "dog")
    for p in bad:
        svg(clip / "svg" / "animals" / f"{p.stem}.svg", "dog")
    skipped = []
    refs = open_source("openclipart", str(clip)).images(skipped)
    assert [Path(r.path).name for r in refs] == ["cat.png"]
    assert_special_skipped(refs, skipped, *bad)

    net = tmp_path / "imagenet"
    img(net / "train" / "n02084071" / "a.JPEG", fmt="JPEG")
    bad = special_files(net / "train" / "n02084071", "b", ".JPEG")
    sel = open_source("imagenet", str(net), backoff=False).candidates(["dog"], 10, 0)
    assert_special_skipped(sel.by_word["dog"], sel.skipped, *bad)


def test_item12_reading_a_fifo_device_or_huge_file_is_an_image_error(tmp_path):
    """Never blocks on a FIFO, never reads a device, and a file over the size cap is refused before reading."""
    import os

    fifo = tmp_path / "zz.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        call_with_timeout(lambda: load_image(ImageRef(str(fifo))), [fifo])
    fifo_svg = tmp_path / "zz.svg"
    os.mkfifo(fifo_svg)
    with pytest.raises(ImageError, match="not a regular file"):
        call_with_timeout(lambda: load_image(ImageRef(str(fifo_svg))), [fifo_svg])
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="not a regular file"):
        call_with_timeout(lambda: load_image(ImageRef(str(tmp_path / "zero.png"))))
    from mmlightning.images.sources.imageio import MAX_IMAGE_BYTES

    assert MAX_IMAGE_BYTES == 64 * 2 ** 20
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as fh:                               # sparse: takes no disk
        fh.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(ImageError, match="larger than the 64 MiB cap"):
        load_image(ImageRef(str(huge)))
    small = img(tmp_path / "small.png", size=(64, 64))
    size = small.stat().st_size
    assert load_image(ImageRef(str(small)), max_bytes=size).size == (64, 64)
    with pytest.raises(ImageError, match="larger than"):
        load_image(ImageRef(str(small)), max_bytes=size - 1)
    with tarfile.open(tmp_path / "a.tar", "w") as tar:           # a tar member over the cap
        tar.add(small, arcname="small.png")
    assert load_image(ImageRef(f"{tmp_path / 'a.tar'}::small.png")).size == (64, 64)
    with pytest.raises(ImageError, match="larger than"):
        load_image(ImageRef(f"{tmp_path / 'a.tar'}::small.png"), max_bytes=size - 1)


def test_words_sharing_a_lemma_are_named_in_the_notes_and_the_log(caplog):
    import logging

    from mmlightning.images.sources.base import ImageRef, select_by_labels

    refs = [ImageRef(f"/x/{i}.png", frozenset({"cat"})) for i in range(3)]
    with caplog.at_level(logging.INFO, logger="mmlightning.images.sources.base"):
        sel = select_by_labels(refs, ["cat", "cats", "dog"], 2, 0, lemma=lambda w: w.rstrip("s"))
    assert sel.by_word["cat"] == sel.by_word["cats"] and "dog" in sel.missing
    assert sel.notes["words_sharing_a_lemma"] == {"cat": ["cat", "cats"]}
    assert "2 words share their images with another word of the same lemma (cat/cats -> cat)" in caplog.text
