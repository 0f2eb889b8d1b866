"""Every source lists the words it labels (`shard --words labelled`), on the synthetic layouts of test_sources."""
from pathlib import Path

import pytest

from mmlightning.errors import UserError
from mmlightning.images.sources import labelled_words, open_source
from test_sources import clipart, imagenet, img, stamps  # noqa: F401  (fixtures)


def test_tuxpaint_lists_its_stamp_labels(stamps):
    assert labelled_words(open_source("tuxpaint", str(stamps))) == ["apple", "blue", "cat", "pear", "truck"]
    nouns = open_source("tuxpaint", str(stamps), description="nouns")
    assert labelled_words(nouns) == ["apple", "blue", "cat", "pear", "soap", "truck"]


def test_openclipart_lists_its_labels_and_not_unlabelled_clips(clipart):
    src = open_source("openclipart", str(clipart), max_keyword_files=3, max_title_files=2)
    assert labelled_words(src) == ["apple", "bird", "cow", "dog", "happy", "mammal", "man", "pappagallo", "red"]


def test_esp_lists_lemmatised_tags(tmp_path):
    for n, tags in ((1, "dogs\ngrass\n"), (2, "Dog\nblue sky\n")):
        img(tmp_path / "images" / f"{n}.jpg", fmt="JPEG")
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / f"{n}.jpg.desc").write_text(tags)
    img(tmp_path / "images" / "3.jpg", fmt="JPEG")  # no tag file: no words
    assert labelled_words(open_source("esp", str(tmp_path))) == ["blue_sky", "dog", "grass"]


def test_folder_lists_its_word_folders_by_lemma(tmp_path):
    img(tmp_path / "cats" / "1.png")
    img(tmp_path / "Dog" / "nested" / "d.png")
    (tmp_path / "empty").mkdir()  # a folder without images labels nothing
    assert labelled_words(open_source("folder", str(tmp_path))) == ["cat", "dog"]


def test_imagenet_lists_the_lemmas_of_its_synsets(imagenet):
    # every train/<wnid>/ or <wnid>.tar (the unreadable unicorn archive too: its word is a missing word later)
    assert labelled_words(open_source("imagenet", str(imagenet))) == [
        "animal", "beast", "cat", "dog", "domestic_dog", "hound", "puppy", "unicorn"]


def test_imagenet_without_hierarchy_files_lists_wordnet_lemmas(tmp_path):
    img(tmp_path / "train" / "n02084071" / "a.JPEG", fmt="JPEG")  # dog.n.01 in WordNet 3.0
    words = labelled_words(open_source("imagenet", str(tmp_path)))
    assert "dog" in words and "domestic_dog" in words and "canis_familiaris" in words


def test_listing_once_serves_the_selection(stamps):
    src = open_source("tuxpaint", str(stamps))
    words = labelled_words(src)
    sel = src.candidates(words, 5, 0)
    assert sorted(sel.by_word) == words and not sel.missing
    assert [Path(r.path).name for r in sel.by_word["blue"]] == ["blue_truck2.svg"]


def test_a_source_that_cannot_list_its_words_says_so_in_one_line():
    class Plain:
        name = "mine"

    with pytest.raises(UserError) as e:
        labelled_words(Plain())
    assert "\n" not in str(e.value) and str(e.value).startswith("source 'mine' cannot list the words it labels")
