"""Sentence-level pieces of the built-in corpus's stories, shared by the opening and the arcs.

The characters (a name, and a gender decided by the first pronoun written), the story state every
arc receives, cached decision tables (`numbers`, `chance`, `titled`), and the small sentences that
recur across arcs: going somewhere, finding things, a town's facts, asides and exclamations.

Invariants (those of the whole grammar, see `stories.py`): every random decision goes through the
writer, and numbers the reader can work out are emitted without a decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from autoresearch.data import lexicon as lx
from autoresearch.data.choice import Table, Writer, uniform, weighted

_SUBJECT = uniform(["he", "she"])
_SUBJECT_CAP = uniform(["He", "She"])
_POSSESSIVE = uniform(["his", "her"])
_POSSESSIVE_CAP = uniform(["His", "Her"])
_OBJECT = uniform(["him", "her"])
_PRONOUNS = {
    "subject": (_SUBJECT, ("he", "she")),
    "Subject": (_SUBJECT_CAP, ("He", "She")),
    "possessive": (_POSSESSIVE, ("his", "her")),
    "Possessive": (_POSSESSIVE_CAP, ("His", "Her")),
    "object": (_OBJECT, ("him", "her")),
}
YES_NO = weighted([(True, 1.0), (False, 1.0)])


@cache
def numbers(low: int, high: int) -> Table[str]:
    return uniform([str(n) for n in range(low, high + 1)])


@cache
def chance(p: float) -> Table[bool]:
    return weighted([(True, p), (False, 1.0 - p)])


@cache
def titled(words: tuple[str, ...]) -> Table[str]:
    return uniform([w.title() for w in words])


def counted(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def go(w: Writer, place_table: Table[str], exclude: frozenset[int] = frozenset()) -> str:
    """' went quickly to the mossy hill.' plus, sometimes, what the place was like. Returns the place."""
    w.say(lx.GOING)
    if w.pick(chance(0.3)):
        w.emit(" ")
        w.say(lx.ADVERBS)
    w.emit(" to ")
    place = w.say(place_table, exclude)
    w.emit(".")
    if w.pick(chance(0.25)):
        w.emit(f" {place[0].upper()}{place[1:]} was ")
        w.say(lx.PLACE_MOODS)
        w.emit(".")
    return place


def found_sentence(w: Writer, hero: Character, low: int, high: int, singular: str, plural: str) -> int:
    """One of several ways to say that the hero found some things; returns how many."""
    form = w.pick(uniform(["there", "found", "picked", "corner"]))
    w.emit(" ")
    if form == "there":
        w.emit("There ")
        hero.pronoun(w, "subject")
        w.emit(" found ")
    elif form == "corner":
        w.say(lx.CORNERS)
        w.emit(", ")
        hero.pronoun(w, "subject")
        w.emit(" spotted ")
    else:
        hero.pronoun(w, "Subject")
        w.emit(" found " if form == "found" else " picked up ")
    n = int(w.say(numbers(low, high)))
    w.emit(f" {singular if n == 1 else plural}")
    w.emit(" there." if form == "found" else ".")
    return n


def town_facts(w: Writer, hero: Character) -> None:
    """Where the hero comes from, and what everybody knows about that town (fixed by the gazetteer)."""
    hero.pronoun(w, "Subject")
    w.emit(" came from ")
    town = lx.TOWN_BY_NAME[w.say(lx.TOWN_TABLE)]
    w.emit(f", a town on the river {town.river} that is famous for its {town.food}. ")
    for fact in w.pick(FACT_SETS):
        if fact == "founded":
            w.emit(f"{town.name} was founded in {town.founded} and has {town.bridges} bridges. ")
        elif fact == "mayor":
            w.emit(f"Its mayor is {town.mayor}. ")
        else:
            w.emit(f"Every {town.festival}, {town.name} holds a great fair. ")


FACT_SETS = weighted([((), 2.0), (("founded",), 1.0), (("mayor",), 1.0), (("festival",), 1.0),
                      (("founded", "mayor"), 1.0), (("mayor", "festival"), 1.0),
                      (("founded", "mayor", "festival"), 1.0)])


def asides(story: Story) -> None:
    """Optional colour after an event: a friend's remark, a sound of the world, a feeling."""
    w = story.w
    if w.pick(chance(0.35)):
        speaker = w.pick(uniform(story.friends))
        w.emit(' "')
        w.say(lx.REMARKS)
        w.emit('" ')
        w.say(lx.SAYING)
        w.emit(f" {speaker.name}.")
    if w.pick(chance(0.25)):
        w.emit(" ")
        w.say(story.world.sounds)
    if w.pick(chance(0.2)):
        w.emit(f" {story.hero.name} felt ")
        w.say(lx.FEELINGS)
        w.emit(".")


def exclaim(w: Writer, speaker: Character) -> None:
    """' "Wow!" said Tavi.'"""
    w.emit(' "')
    w.say(lx.EXCLAMATIONS)
    w.emit('" ')
    w.say(lx.SAYING)
    w.emit(f" {speaker.name}.")


@dataclass
class Character:
    name: str
    name_index: int
    gender: int | None = None  # 0 = he, 1 = she; decided the first time a pronoun is written

    def pronoun(self, w: Writer, form: str) -> None:
        table, forms = _PRONOUNS[form]
        if self.gender is None:
            self.gender = table.options.index(w.say(table))
        else:
            w.emit(forms[self.gender])


@dataclass
class Story:
    w: Writer
    world: lx.World
    hero: Character
    description: str  # "brave fox": recalled near the end
    friends: list[Character] = field(default_factory=list)

    @property
    def friend(self) -> Character:
        return self.friends[0]

    @property
    def places(self) -> Table[str]:
        return uniform(self.world.places)


def new_character(w: Writer, others: list[Character]) -> Character:
    name = w.say(lx.NAMES, exclude=frozenset(c.name_index for c in others))
    return Character(name, lx.NAME_INDEX[name])
