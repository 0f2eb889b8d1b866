"""Offline WordNet: the NLTK layout of Debian's wordnet-base, the lexnames file, the lemmatiser."""
from pathlib import Path

import pytest

from mmlightning.images import wordnet as wnmod
from mmlightning.errors import UserError

DEBIAN = Path("/usr/share/wordnet")


def test_lexnames_has_45_numbered_lines():
    lines = wnmod.lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[3] == "03\tnoun.Tops\t1"
    assert lines[29] == "29\tverb.body\t2"
    assert lines[44] == "44\tadj.ppl\t3"
    assert all(int(line.split("\t")[0]) == i for i, line in enumerate(lines))


def test_layout_refuses_a_folder_without_the_database(tmp_path):
    (tmp_path / "data.noun").write_text("x")
    with pytest.raises(UserError, match="apt-get install wordnet-base"):
        wnmod.layout_wordnet(tmp_path, tmp_path / "out")


def test_missing_wordnet_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(wnmod, "_nltk_has_wordnet", lambda: False)
    monkeypatch.setenv("MMLIGHTNING_WORDNET_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=r"apt-get install wordnet-base.*nltk.download"):
        wnmod.ensure_wordnet()


@pytest.mark.skipif(not (DEBIAN / "data.noun").is_file(), reason="needs Debian wordnet-base")
@pytest.mark.filterwarnings("ignore:The multilingual functions")
def test_debian_layout_is_readable_by_nltk(tmp_path, monkeypatch):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])  # NLTK reads only from there

    target = wnmod.layout_wordnet(DEBIAN, tmp_path)
    corpus = target / "corpora" / "wordnet"
    assert (corpus / "lexnames").read_text() == wnmod.lexnames_text()
    assert not (corpus / "data.noun").is_symlink()
    reader = WordNetCorpusReader(str(corpus), None)
    dog = reader.synsets("dog", "n")[0]
    assert wnmod.wnid(dog) == "n02084071"
    assert dog.lexname() == "noun.animal"
    # a second layout reuses the copied files
    assert wnmod.layout_wordnet(DEBIAN, tmp_path) == target


def test_lemmatizer_is_real_wordnet():
    assert wnmod.lemmatize("cats") == "cat"
    assert wnmod.lemmatize("Geese") == "goose"
    assert wnmod.lemmatize("running", "v") == "run"
    assert wnmod.lemmatize("glasses") == "glass"
    assert wnmod.lemmatizer() is wnmod.lemmatizer()


def test_noun_senses_break_count_ties_by_name_and_ancestors():
    from mmlightning.images.wordnet import first_noun_synset, noun_ancestors, noun_senses

    assert first_noun_synset("heron") == "heron.n.02"        # not hero.n.04 ("Heron"), equal counts
    assert first_noun_synset("cat") == "cat.n.01" and first_noun_synset("quickly") is None
    assert [s.name() for s in noun_senses("time")][:2] == ["time.n.01", "time.n.02"]  # counts decide
    anc = noun_ancestors("heron")
    assert {"bird.n.01", "animal.n.01", "entity.n.01"} <= anc and "person.n.01" not in anc
    assert noun_ancestors("quickly") == frozenset()
