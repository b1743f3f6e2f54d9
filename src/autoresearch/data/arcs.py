"""The story arcs of the built-in corpus: the middle of every story, chosen from `ARC_TABLE`.

Each arc is a class with two static methods: `title(w, world)` writes the title's suffix and returns
what the body needs (the arc's state), and `body(story, state)` writes the body paragraphs. The
numbers of an arc (running totals, change, scores, days) follow from earlier decisions and are
written without a decision of their own.
"""

from __future__ import annotations

from autoresearch.data import lexicon as lx
from autoresearch.data.choice import Writer, uniform, weighted
from autoresearch.data.phrases import (
    Story,
    asides,
    chance,
    counted,
    exclaim,
    found_sentence,
    go,
    numbers,
    titled,
)


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


ARC_TABLE = weighted([(Collect, 1.0), (Lost, 1.0), (Game, 1.0), (Market, 1.0), (Journey, 1.0), (Build, 1.0)])
