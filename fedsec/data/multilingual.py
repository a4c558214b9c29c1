"""An embedded multilingual parallel corpus with known language families (offline default for Fed-MNMT).

Sentences are drawn from a small interlingua (subject, verb, object, optional
adjectives and a tense marker) and realised in synthetic languages. Each family
has its own root lexicon, word order (SVO, SOV, VSO) and adjective position;
each language of a family keeps most of the family's words and changes the rest
(a vowel shift or a suffix), so languages of one family share more vocabulary
and word order than languages of different families: clustering has a ground
truth. Clients are language pairs; a row is ``{source, target, pair, label}``
with ``label`` the index of the pair.

Everything is a deterministic function of the seed; nothing is downloaded. A
real corpus goes through the same columns (``data.name=csv`` / ``hf`` with
``source`` and ``target`` columns and a ``label`` naming the pair).
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, Features, Value

from fedsec.config import DataConfig
from fedsec.data.registry import DATASETS, TRANSLATION

# family -> languages; order matters (it fixes the generated lexicons)
FAMILIES: dict[str, list[str]] = {"north": ["no1", "no2", "no3"], "south": ["so1", "so2", "so3"],
                                  "east": ["ea1", "ea2"]}
ORDERS = {"north": ("S", "V", "O"), "south": ("S", "O", "V"), "east": ("V", "S", "O")}
ADJ_AFTER = {"north": False, "south": True, "east": True}
N_NOUNS, N_VERBS, N_ADJS, N_TENSES = 30, 14, 12, 3
MUTATION_RATE = 0.3
CORPUS_SEED = 1234  # the languages themselves never change with run.seed
_CONSONANTS, _VOWELS = "bdgklmnprstvz", "aeiou"


def languages() -> list[str]:
    return [lang for langs in FAMILIES.values() for lang in langs]


def family_of(language: str) -> str:
    return next(f for f, langs in FAMILIES.items() if language in langs)


DEFAULT_PAIRS = [("no1", "so1"), ("no2", "ea1"), ("no3", "so3"), ("so1", "no2"), ("so2", "ea2"), ("so3", "no1"),
                 ("ea1", "so2"), ("ea2", "no3")]


def default_pairs() -> list[tuple[str, str]]:
    """Eight directions: every language is the source of one pair and the target of one; the sources
    of one family translate into different families (and targets come from different ones), so
    that source and target families are not confounded."""
    return list(DEFAULT_PAIRS)


def _word(rng: np.random.Generator, syllables: int) -> str:
    return "".join(rng.choice(list(_CONSONANTS)) + rng.choice(list(_VOWELS)) for _ in range(syllables))


def _lexicons() -> dict[str, dict[str, list[str]]]:
    """language -> part of speech -> words (index = concept id)."""
    rng = np.random.default_rng(CORPUS_SEED)
    sizes = {"noun": N_NOUNS, "verb": N_VERBS, "adj": N_ADJS, "tense": N_TENSES}
    result = {}
    for _family, langs in FAMILIES.items():
        roots = {pos: [_word(rng, int(rng.integers(2, 4))) for _ in range(n)] for pos, n in sizes.items()}
        for lang in langs:
            suffix = _word(rng, 1)
            lexicon = {}
            for pos, words in roots.items():
                lexicon[pos] = [
                    (w[:-1] + rng.choice([v for v in _VOWELS if v != w[-1]]) if rng.random() < 0.5 else w + suffix)
                    if rng.random() < MUTATION_RATE else w
                    for w in words
                ]
            result[lang] = lexicon
    return result


def _realise(meaning: dict[str, int], lexicon: dict[str, list[str]], family: str) -> str:
    def phrase(noun: str, adj: str) -> list[str]:
        words = [lexicon["noun"][meaning[noun]]]
        if meaning[adj] >= 0:
            a = lexicon["adj"][meaning[adj]]
            words = words + [a] if ADJ_AFTER[family] else [a] + words
        return words

    parts = {"S": phrase("subject", "subject_adj"), "O": phrase("object", "object_adj"),
             "V": [lexicon["tense"][meaning["tense"]], lexicon["verb"][meaning["verb"]]]}
    return " ".join(w for slot in ORDERS[family] for w in parts[slot])


def parallel_corpus(pairs: list[tuple[str, str]], per_pair: int, seed: int) -> Dataset:
    """``per_pair`` sentence pairs for each direction; meanings are drawn independently per pair."""
    lexicons = _lexicons()
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"source": [], "target": [], "pair": [], "label": []}
    for index, (src, tgt) in enumerate(pairs):
        for _ in range(per_pair):
            meaning = {"subject": int(rng.integers(N_NOUNS)), "object": int(rng.integers(N_NOUNS)),
                       "verb": int(rng.integers(N_VERBS)), "tense": int(rng.integers(N_TENSES)),
                       "subject_adj": int(rng.integers(-N_ADJS, N_ADJS)),
                       "object_adj": int(rng.integers(-N_ADJS, N_ADJS))}
            rows["source"].append(_realise(meaning, lexicons[src], family_of(src)))
            rows["target"].append(_realise(meaning, lexicons[tgt], family_of(tgt)))
            rows["pair"].append(f"{src}-{tgt}")
            rows["label"].append(index)
    names = [f"{s}-{t}" for s, t in pairs]
    features = Features({"source": Value("string"), "target": Value("string"), "pair": Value("string"),
                         "label": ClassLabel(names=names)})
    return Dataset.from_dict(rows, features=features)


def vocabulary() -> list[str]:
    """Every word of every generated language, sorted."""
    return sorted({w for lexicon in _lexicons().values() for words in lexicon.values() for w in words})


@DATASETS.register("multilingual", traits=TRANSLATION)
def multilingual(cfg: DataConfig) -> tuple[Dataset, Dataset]:
    """The generated corpus: ``data.train_size`` / ``data.test_size`` sentence pairs in all
    (0: 300 / 50 per direction)."""
    pairs = default_pairs()
    per_pair = lambda size, default: -(-size // len(pairs)) if size else default  # noqa: E731
    train = parallel_corpus(pairs, per_pair(cfg.train_size, 300), seed=CORPUS_SEED + 1)
    test = parallel_corpus(pairs, per_pair(cfg.test_size, 50), seed=CORPUS_SEED + 2)
    return train, test
