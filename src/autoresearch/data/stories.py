"""The grammar of the built-in corpus: short stories with recurring characters, dialogue and sums.

`tell_story(writer)` makes every random decision through the writer (see `choice.py`), so the
same function samples a story with its exact log-probability and, in tests, counts the derivations
of a given text. Numbers the reader can work out (running totals, change, scores) are written
without a decision: a model that learns the arithmetic predicts them for free.
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


# ---------------------------------------------------------------------------------------------
# Story arcs: each writes a title suffix (returning what the body needs) and the body paragraphs.


class Collect:
    """The hero gathers exactly N things; the running total decides when the story moves on."""

    @staticmethod
    def title(w: Writer, world: lx.World) -> tuple[int, str, str]:
        w.emit(" and the ")
        goal = int(w.say(numbers(6, 20)))
        w.emit(" ")
        plural = w.say(titled(tuple(p for _, p in world.finds))).lower()
        singular = next(s for s, p in world.finds if p == plural)
        return goal, singular, plural

    @staticmethod
    def body(story: Story, state: tuple[int, str, str]) -> None:
        w, hero, friend = story.w, story.hero, story.friend
        goal, singular, plural = state
        w.emit("\n\n")
        w.say(lx.FIRST_TIMES)
        w.emit(f"{hero.name} decided to collect {goal} {plural} ")
        w.say(lx.PURPOSES)
        w.emit(f" {friend.name}. \"")
        w.say(uniform(["I will help you!", f"That is a lot of {plural}!", "Good luck!", "What a fine plan!"]))
        w.emit("\" ")
        w.say(lx.SAYING)
        w.emit(f" {friend.name}.")

        total, first = 0, True
        while total < goal:
            w.emit("\n\n")
            if first:
                w.emit("First, ")
                first = False
            else:
                w.say(lx.TIMES)
            w.emit(f"{hero.name} ")
            go(w, story.places)
            found = found_sentence(w, hero, 1, min(5, goal - total), singular, plural)
            if found >= 4 and w.pick(chance(0.5)):
                exclaim(w, hero)
            asides(story)
            total += found
            if goal - total >= 1 and w.pick(chance(0.3)):
                w.emit(f" {friend.name} found ")
                gift = int(w.say(numbers(1, min(3, goal - total))))
                w.emit(" more and gave " + ("it" if gift == 1 else "them") + " to ")
                hero.pronoun(w, "object")
                w.emit(".")
                total += gift
            if total >= 3 and w.pick(chance(0.15)):
                w.emit(f" On the way back, {hero.name} dropped ")
                dropped = int(w.say(numbers(1, min(3, total - 1))))
                w.emit(" of them.")
                total -= dropped
            w.emit(f" Now {hero.name} had {counted(total, singular, plural)}.")
            if total < goal and w.pick(chance(0.5)):
                w.emit(" ")
                hero.pronoun(w, "Subject")
                w.emit(f" needed {goal - total} more.")

        w.emit(f"\n\nAt last, {hero.name} had all {goal} {plural}. ")
        hero.pronoun(w, "Subject")
        w.emit(f" gave them to {friend.name}, who ")
        w.say(uniform(["smiled from ear to ear", "clapped with joy", "could hardly believe it",
                       "said thank you many times"]))
        w.emit(".")


class Lost:
    """The hero searches hiding spots for a lost thing; a friend's hint names the right spot."""

    @staticmethod
    def title(w: Writer, world: lx.World) -> tuple[str, str]:
        w.emit(" and the Lost ")
        color = w.say(titled(lx.COLORS)).lower()
        w.emit(" ")
        thing = w.say(titled(lx.LOST_THINGS)).lower()
        return color, thing

    @staticmethod
    def body(story: Story, state: tuple[str, str]) -> None:
        w, hero, world = story.w, story.hero, story.world
        color, thing = state
        spots = uniform(world.spots)
        w.emit("\n\n")
        w.say(lx.FIRST_TIMES)
        w.emit(f"{hero.name} could not find ")
        hero.pronoun(w, "possessive")
        w.emit(f" {color} {thing}. ")
        hero.pronoun(w, "Subject")
        w.emit(" felt ")
        w.say(uniform(["sad", "worried", "upset", "confused"]))
        w.emit(".")

        searched: set[int] = set()
        hinted: int | None = None
        for attempt in range(4):
            w.emit("\n\n")
            w.emit("First, " if attempt == 0 else "")
            if attempt:
                w.say(lx.TIMES)
            w.emit(f"{hero.name} looked ")
            if hinted is None:
                spot = w.say(spots, exclude=frozenset(searched))
            else:
                spot = spots.options[hinted]
                w.emit(spot)
            searched.add(spots.options.index(spot))
            w.emit(". ")
            if hinted is not None or attempt == 3 or w.pick(chance(0.3)):
                break
            w.say(uniform(["It was not there.", "There was nothing there.", "No luck.", "Only dust."]))
            asides(story)
            if len(searched) < len(spots) - 1 and w.pick(chance(0.4)):
                helper = w.pick(uniform(story.friends))
                w.emit(" \"Have you looked ")
                hint = w.say(spots, exclude=frozenset(searched))
                hinted = spots.options.index(hint)
                w.emit(f"?\" asked {helper.name}.")
        w.emit("There it was!")
        if w.pick(chance(0.4)):
            exclaim(w, hero)
        w.emit(f" {hero.name} ")
        w.say(uniform(["picked up", "hugged", "held up", "dusted off"]))
        w.emit(" ")
        hero.pronoun(w, "possessive")
        w.emit(f" {color} {thing} and ")
        w.say(uniform(["laughed", "danced a little", "sighed with relief", "smiled"]))
        w.emit(".")


class Game:
    """Two friends play a game of R rounds; the scores add up and decide the winner."""

    @staticmethod
    def title(w: Writer, world: lx.World) -> None:
        w.emit(" and the Big Game")

    @staticmethod
    def body(story: Story, state: None) -> None:
        w, hero, friend = story.w, story.hero, story.friend
        w.emit("\n\n")
        w.say(lx.FIRST_TIMES)
        w.emit(f"{hero.name} and {friend.name} played ")
        w.say(lx.GAMES)
        w.emit(". The game had ")
        rounds = int(w.say(numbers(3, 6)))
        w.emit(" rounds.\n\n")
        scores = {hero.name: 0, friend.name: 0}
        for r in range(1, rounds + 1):
            w.emit(f"In round {r}, {hero.name} ")
            verb = w.say(lx.ROUND_VERBS)
            w.emit(" ")
            a = int(w.say(numbers(0, 15)))
            w.emit(" point" + ("" if a == 1 else "s") + f" and {friend.name} {verb} ")
            b = int(w.say(numbers(0, 15)))
            w.emit(" point" + ("" if b == 1 else "s") + ".")
            scores[hero.name] += a
            scores[friend.name] += b
            if r < rounds and w.pick(chance(0.7)):
                w.emit(f" After round {r}, {hero.name} had {scores[hero.name]} and "
                       f"{friend.name} had {scores[friend.name]}.")
            w.emit(" " if r < rounds else "")
        (winner, high), (loser, low) = sorted(scores.items(), key=lambda kv: -kv[1])
        if high == low:
            w.emit(f"\n\nIt was a tie, with {high} points each. \"Let us play again tomorrow!\" said {hero.name}.")
            return
        w.emit(f"\n\n{winner} won with {high} points, and {loser} had {low}. \"Well played, {winner}!\" ")
        w.say(lx.SAYING)
        w.emit(f" {loser}.")


class Market:
    """The hero shops with a purse of coins; prices times quantities and the change are computed."""

    @staticmethod
    def title(w: Writer, world: lx.World) -> None:
        w.emit(" Goes to Market")

    @staticmethod
    def body(story: Story, state: None) -> None:
        w, hero, world = story.w, story.hero, story.world
        goods = uniform(tuple(p for _, p in world.goods))
        w.emit("\n\n")
        w.say(lx.FIRST_TIMES)
        w.emit(f"{hero.name} took ")
        coins = int(w.say(numbers(20, 400)))
        w.emit(" coins to the market.")
        bought: set[int] = set()
        while True:
            w.emit("\n\n" + ("First, " if not bought else "Then "))
            hero.pronoun(w, "subject")
            w.emit(" saw some ")
            plural = w.say(goods, exclude=frozenset(bought))
            bought.add(goods.options.index(plural))
            singular = next(s for s, p in world.goods if p == plural)
            w.emit(". They cost ")
            price = int(w.say(numbers(1, min(60, coins))))
            w.emit(" coin" + ("" if price == 1 else "s") + f" each. {hero.name} bought ")
            quantity = int(w.say(numbers(1, min(9, coins // price))))
            coins -= price * quantity
            w.emit(f" {singular if quantity == 1 else plural} and paid {price * quantity}. Now ")
            hero.pronoun(w, "subject")
            w.emit(f" had {coins} left.")
            asides(story)
            if coins == 0 or len(bought) == len(goods) or not w.pick(chance(0.6)):
                break
        if coins == 0:
            w.emit(f"\n\n{hero.name} had spent every coin, so ")
            hero.pronoun(w, "subject")
            w.emit(" went home.")
        else:
            w.emit(f"\n\nWith {coins} coins still in ")
            hero.pronoun(w, "possessive")
            w.emit(f" pocket, {hero.name} went home.")


class Journey:
    """The hero and a friend travel for several days; the day count runs on by itself."""

    @staticmethod
    def title(w: Writer, world: lx.World) -> None:
        w.emit(" and the Long Trip")

    @staticmethod
    def body(story: Story, state: None) -> None:
        w, hero, friend, world = story.w, story.hero, story.friend, story.world
        places = uniform(world.places)
        w.emit("\n\n")
        w.say(lx.FIRST_TIMES)
        w.emit(f"{hero.name} and {friend.name} set out for ")
        destination = w.say(places)
        visited = {places.options.index(destination)}
        w.emit(".")
        for day in range(1, 6):
            w.emit(f"\n\nOn day {day}, they ")
            if day >= 2 and (day == 5 or w.pick(chance(0.4))):
                w.emit(f"finally reached {destination}. \"")
                w.say(uniform(["We made it!", "At last!", "What a trip!", "It was worth it!"]))
                w.emit("\" ")
                w.say(lx.SAYING)
                w.emit(f" {hero.name}.")
                return
            w.say(uniform(["walked past", "stopped at", "camped near", "rested by", "climbed over"]))
            w.emit(" ")
            place = w.say(places, exclude=frozenset(visited))
            visited.add(places.options.index(place))
            w.emit(". ")
            w.say(world.sounds)
            asides(story)


class Build:
    """The hero gathers three kinds of parts in given numbers, then builds; the numbers come back at the end."""

    @staticmethod
    def title(w: Writer, world: lx.World) -> tuple:
        w.emit(" Builds ")
        name = w.say(titled(tuple(b[0] for b in lx.BUILDS))).lower()
        return next(b for b in lx.BUILDS if b[0] == name)

    @staticmethod
    def body(story: Story, build: tuple) -> None:
        w, hero, friend = story.w, story.hero, story.friend
        what, parts = build
        w.emit("\n\n")
        w.say(lx.FIRST_TIMES)
        w.emit(f"{hero.name} wanted to build {what}. ")
        hero.pronoun(w, "Subject")
        w.emit(" needed ")
        needs = []
        for i, (singular, plural) in enumerate(parts):
            w.emit(["", ", ", " and "][i])
            n = int(w.say(numbers(1, 5)))
            needs.append(n)
            w.emit(f" {singular if n == 1 else plural}")
        w.emit(".")
        if w.pick(chance(0.5)):
            w.emit(f' "I can help you look," said {friend.name}.')
        for i, ((singular, plural), n) in enumerate(zip(parts, needs, strict=True)):
            w.emit(["\n\nFirst, ", "\n\nNext, ", "\n\nLast, "][i])
            w.emit(f"{hero.name} looked for {plural}.")
            have = 0
            while have < n:
                w.emit(" ")
                hero.pronoun(w, "Subject")
                w.emit(" ")
                go(w, story.places)
                have += found_sentence(w, hero, 1, n - have, singular, plural)
                asides(story)
            if n > 1 and w.pick(chance(0.7)):
                w.emit(" Now ")
                hero.pronoun(w, "subject")
                w.emit(f" had all {n} {plural}.")
        recall = [f"{n} {s if n == 1 else p}" for n, (s, p) in zip(needs, parts, strict=True)]
        w.emit(f"\n\nWith {recall[0]}, {recall[1]} and {recall[2]}, {hero.name} and {friend.name} built {what}.")
        exclaim(w, friend)


WORLD_TABLE = uniform(tuple(lx.WORLDS.values()))
ARC_TABLE = weighted([(Collect, 1.0), (Lost, 1.0), (Game, 1.0), (Market, 1.0), (Journey, 1.0), (Build, 1.0)])
