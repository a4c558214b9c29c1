"""Embedded multilingual parallel corpora with known language families (offline defaults for Fed-MNMT).

Sentences are drawn from a small interlingua (subject, verb, object, optional
adjectives and a tense marker) and realised in synthetic languages. Each family
has its own root lexicon, word order and adjective position; each language of a
family keeps most of the family's words and changes the rest (a vowel shift or a
suffix, with probability ``mutation_rate``), so languages of one family share
more vocabulary and word order than languages of different families: clustering
has a ground truth. Clients are language pairs; a row is
``{source, target, pair, label}`` with ``label`` the index of the pair.

Two corpora are registered:

- ``multilingual``: 3 families (3, 3, 2 languages), 8 directions, mutation 0.3;
- ``multilingual16``: 4 families x 4 languages, 16 directions, mutation 0.15 (the
  Fed-MNMT evidence study's corpus: more languages per family than Europarl's
  groups of 2-3, so that family, random and gradient groups differ, and fewer
  within-family differences, so that sharing within a family can pay).

Everything is a deterministic function of the corpus and the seed; nothing is
downloaded. A real corpus goes through the same columns (``data.name=csv`` /
``hf`` with ``source`` and ``target`` columns and a ``label`` naming the pair).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from datasets import ClassLabel, Dataset, Features, Value

from fedsec.config import DataConfig
from fedsec.data.registry import DATASETS, TRANSLATION, parse_pairs

N_NOUNS, N_VERBS, N_ADJS, N_TENSES = 30, 14, 12, 3
_CONSONANTS, _VOWELS = "bdgklmnprstvz", "aeiou"


@dataclass(frozen=True)
class Corpus:
    """A family of generated languages and the translation directions (clients) over them.

    ``families`` maps a family to its languages (order fixes the generated lexicons);
    ``orders`` a family to its word order (a permutation of S, V, O); ``adj_after``
    whether adjectives follow their noun; ``pairs`` the directions; ``seed`` the
    lexicons' seed (the languages never change with ``run.seed``).
    """

    families: dict[str, tuple[str, ...]]
    orders: dict[str, tuple[str, str, str]]
    adj_after: dict[str, bool]
    pairs: tuple[tuple[str, str], ...]
    mutation_rate: float
    seed: int
    pretrain_steps: int
    pretrain_lr: float

    def __hash__(self) -> int:
        return hash((self.pairs, self.seed, self.mutation_rate))

    def languages(self) -> list[str]:
        return [lang for langs in self.families.values() for lang in langs]

    def family_of(self, language: str) -> str:
        return next(f for f, langs in self.families.items() if language in langs)

    def lexicons(self) -> dict[str, dict[str, list[str]]]:
        """language -> part of speech -> words (index = concept id)."""
        return _lexicons(self)

    def vocabulary(self) -> list[str]:
        """Every word of every language of the corpus, sorted."""
        return sorted({w for lexicon in self.lexicons().values() for words in lexicon.values() for w in words})

    def parallel(self, pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...], per_pair: int,
                 seed: int) -> Dataset:
        """``per_pair`` sentence pairs for each direction; meanings are drawn independently per pair."""
        lexicons = self.lexicons()
        rng = np.random.default_rng(seed)
        rows: dict[str, list] = {"source": [], "target": [], "pair": [], "label": []}
        for index, (src, tgt) in enumerate(pairs):
            for _ in range(per_pair):
                meaning = {"subject": int(rng.integers(N_NOUNS)), "object": int(rng.integers(N_NOUNS)),
                           "verb": int(rng.integers(N_VERBS)), "tense": int(rng.integers(N_TENSES)),
                           "subject_adj": int(rng.integers(-N_ADJS, N_ADJS)),
                           "object_adj": int(rng.integers(-N_ADJS, N_ADJS))}
                rows["source"].append(self._realise(meaning, lexicons[src], self.family_of(src)))
                rows["target"].append(self._realise(meaning, lexicons[tgt], self.family_of(tgt)))
                rows["pair"].append(f"{src}-{tgt}")
                rows["label"].append(index)
        names = [f"{s}-{t}" for s, t in pairs]
        features = Features({"source": Value("string"), "target": Value("string"), "pair": Value("string"),
                             "label": ClassLabel(names=names)})
        return Dataset.from_dict(rows, features=features)

    def _realise(self, meaning: dict[str, int], lexicon: dict[str, list[str]], family: str) -> str:
        def phrase(noun: str, adj: str) -> list[str]:
            words = [lexicon["noun"][meaning[noun]]]
            if meaning[adj] >= 0:
                a = lexicon["adj"][meaning[adj]]
                words = words + [a] if self.adj_after[family] else [a] + words
            return words

        parts = {"S": phrase("subject", "subject_adj"), "O": phrase("object", "object_adj"),
                 "V": [lexicon["tense"][meaning["tense"]], lexicon["verb"][meaning["verb"]]]}
        return " ".join(w for slot in self.orders[family] for w in parts[slot])


def _word(rng: np.random.Generator, syllables: int) -> str:
    return "".join(rng.choice(list(_CONSONANTS)) + rng.choice(list(_VOWELS)) for _ in range(syllables))


@functools.cache
def _lexicons(corpus: Corpus) -> dict[str, dict[str, list[str]]]:
    rng = np.random.default_rng(corpus.seed)
    sizes = {"noun": N_NOUNS, "verb": N_VERBS, "adj": N_ADJS, "tense": N_TENSES}
    result = {}
    for _family, langs in corpus.families.items():
        roots = {pos: [_word(rng, int(rng.integers(2, 4))) for _ in range(n)] for pos, n in sizes.items()}
        for lang in langs:
            suffix = _word(rng, 1)
            result[lang] = {
                pos: [(w[:-1] + rng.choice([v for v in _VOWELS if v != w[-1]]) if rng.random() < 0.5 else w + suffix)
                      if rng.random() < corpus.mutation_rate else w for w in words]
                for pos, words in roots.items()
            }
    return result


def _crossed_pairs(families: dict[str, tuple[str, ...]]) -> tuple[tuple[str, str], ...]:
    """Every language the source of one pair and the target of one; the i-th language of family f
    translates into family f + 1 + (i mod (F - 1)), so the sources of one family go to different
    families and source and target families are not confounded."""
    names = list(families)
    free = {f: list(families[f]) for f in names}
    pairs = []
    for f_index, family in enumerate(names):
        for i, source in enumerate(families[family]):
            target_family = names[(f_index + 1 + i % (len(names) - 1)) % len(names)]
            pairs.append((source, free[target_family].pop(0)))
    return tuple(pairs)


CORPORA: dict[str, Corpus] = {
    "multilingual": Corpus(
        families={"north": ("no1", "no2", "no3"), "south": ("so1", "so2", "so3"), "east": ("ea1", "ea2")},
        orders={"north": ("S", "V", "O"), "south": ("S", "O", "V"), "east": ("V", "S", "O")},
        adj_after={"north": False, "south": True, "east": True},
        pairs=(("no1", "so1"), ("no2", "ea1"), ("no3", "so3"), ("so1", "no2"), ("so2", "ea2"), ("so3", "no1"),
               ("ea1", "so2"), ("ea2", "no3")),
        mutation_rate=0.3, seed=1234, pretrain_steps=800, pretrain_lr=3e-3),
}
_FAMILIES16 = {f: tuple(f"{f[:2]}{i}" for i in range(1, 5)) for f in ("north", "south", "east", "west")}
CORPORA["multilingual16"] = Corpus(
    families=_FAMILIES16,
    orders={"north": ("S", "V", "O"), "south": ("S", "O", "V"), "east": ("V", "S", "O"), "west": ("V", "O", "S")},
    adj_after={"north": False, "south": True, "east": True, "west": False},
    pairs=_crossed_pairs(_FAMILIES16), mutation_rate=0.15, seed=1616, pretrain_steps=1600, pretrain_lr=1e-3)


def corpus_of(data_name: str) -> Corpus | None:
    """The embedded corpus registered as ``data.name`` (None for any other dataset)."""
    return CORPORA.get(data_name)


def _register(name: str, corpus: Corpus) -> None:
    @DATASETS.register(name, traits=TRANSLATION)
    def load(cfg: DataConfig) -> tuple[Dataset, Dataset]:
        pairs = parse_pairs(cfg.pairs, corpus.pairs) if cfg.pairs else list(corpus.pairs)
        n = len(pairs)
        per_pair = lambda size, default: -(-size // n) if size else default  # noqa: E731
        return (corpus.parallel(pairs, per_pair(cfg.train_size, 300), seed=corpus.seed + 1),
                corpus.parallel(pairs, per_pair(cfg.test_size, 50), seed=corpus.seed + 2))

    load.__doc__ = (f"The generated corpus {name!r} ({len(corpus.languages())} languages, {len(corpus.pairs)} "
                    "directions, or those of ``data.pairs``): ``data.train_size`` / ``data.test_size`` sentence "
                    "pairs in all (0: 300 / 50 per direction).")


for _name, _corpus in CORPORA.items():
    _register(_name, _corpus)
