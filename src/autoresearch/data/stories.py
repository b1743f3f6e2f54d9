"""The grammar of the built-in corpus: short stories with recurring characters, dialogue and sums.

`tell_story(writer)` makes every random decision through the writer (see `choice.py`), so the
same function samples a story with its exact log-probability and, in tests, counts the derivations
of a given text. Numbers the reader can work out (running totals, change, scores) are written
without a decision: a model that learns the arithmetic predicts them for free.

This module writes a story's title, opening and closing; the sentences they share with the middle
are in `phrases.py`, and the middle is one of the arcs of `arcs.py`.
"""

from __future__ import annotations

from autoresearch.data import lexicon as lx
from autoresearch.data.arcs import ARC_TABLE
from autoresearch.data.choice import Writer, uniform
from autoresearch.data.phrases import Story, chance, new_character, titled, town_facts

WORLD_TABLE = uniform(tuple(lx.WORLDS.values()))


def tell_story(w: Writer) -> None:
    world = w.pick(WORLD_TABLE)
    arc = w.pick(ARC_TABLE)

    w.emit("The ")
    adjective = w.say(titled(lx.ADJECTIVES)).lower()
    w.emit(" ")
    kind = w.say(titled(world.kinds)).lower()
    arc_state = arc.title(w, world)
    w.emit("\n\n")

    w.say(uniform(["Once upon a time, there was ", "There once was ", "Long ago, there lived "]))
    w.emit(f"{lx.article(adjective)} {adjective} {kind}")
    w.say(uniform([" named ", " called "]))
    hero = new_character(w, [])
    w.emit(". ")
    hero.pronoun(w, "Subject")
    w.emit(" lived ")
    w.say(world.homes)
    w.emit(". ")
    if w.pick(chance(0.4)):
        w.say(world.sounds)
        w.emit(" ")
    if w.pick(chance(0.7)):
        town_facts(w, hero)
    if w.pick(chance(0.5)):
        hero.pronoun(w, "Subject")
        w.emit(" had ")
        w.say(uniform(lx.COLORS))
        w.emit(" ")
        w.say(lx.FEATURES)
        w.emit(". ")
    w.emit(f"{hero.name} loved ")
    w.say(lx.HOBBIES)
    w.emit(". ")
    story = Story(w, world, hero, f"{adjective} {kind}")
    hero.pronoun(w, "Possessive")
    w.emit(" best friend was ")
    introduce_friend(story)
    if w.pick(chance(0.35)):
        w.emit(" Another friend was ")
        introduce_friend(story)

    arc.body(story, arc_state)

    w.emit("\n\n")
    w.say(uniform(["That night, ", "That evening, ", "At bedtime, "]))
    w.say(uniform([hero.name, f"the {story.description}"]))
    w.emit(" felt ")
    w.say(lx.FEELINGS)
    w.emit(". ")
    hero.pronoun(w, "Subject")
    w.emit(" had learned that ")
    w.say(lx.LESSONS)
    w.emit(".")


def introduce_friend(story: Story) -> None:
    w = story.w
    w.say(lx.with_article(lx.ADJECTIVES))
    w.emit(" ")
    w.say(uniform(story.world.kinds))
    w.emit(" named ")
    story.friends.append(new_character(w, [story.hero, *story.friends]))
    w.emit(".")
