"""Word lists of the built-in story world. Written for this project; every string is original."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from autoresearch.data.choice import Table, uniform, weighted


def zipf(options, exponent: float = 1.0) -> Table[str]:
    """Options weighted 1/rank^exponent: a few common choices and a long tail, as in real text."""
    return weighted([(o, 1.0 / (rank + 1) ** exponent) for rank, o in enumerate(options)])


@dataclass(frozen=True)
class World:
    """A setting: where characters live, what they are, where they go, what they find and buy."""

    homes: Table[str]  # "in a den under the old oak" - unique across worlds, so the text names the world
    kinds: tuple[str, ...]  # creatures or people of this world
    places: tuple[str, ...]  # "the mossy hill"; used after "to", "at", "near"
    spots: tuple[str, ...]  # hiding places searched for a lost thing: "under the bed"
    finds: tuple[tuple[str, str], ...]  # collectible things (singular, plural)
    goods: tuple[tuple[str, str], ...]  # things for sale at the market (singular, plural)
    sounds: Table[str]  # a sentence of background sound or weather


WORLDS: dict[str, World] = {
    "forest": World(
        homes=uniform([
            "in a snug den under the old oak tree",
            "in a hollow log beside the fern patch",
            "in a round burrow at the edge of the pine wood",
            "in a little house made of bark and moss",
        ]),
        kinds=("fox", "rabbit", "badger", "hedgehog", "owl", "squirrel", "deer", "mouse", "bear", "woodpecker"),
        places=("the mossy hill", "the berry bushes", "the clearing", "the river bank", "the tall pines",
                "the mushroom ring", "the fallen tree", "the quiet pond", "the fern valley", "the rocky path"),
        spots=("under a pile of leaves", "behind the old stump", "inside a hollow tree", "beneath the ferns",
               "near the stream", "under the blackberry bush", "on top of a flat rock", "in the tall grass"),
        finds=(("acorn", "acorns"), ("pinecone", "pinecones"), ("berry", "berries"), ("feather", "feathers"),
               ("mushroom", "mushrooms"), ("smooth stone", "smooth stones"), ("red leaf", "red leaves")),
        goods=(("honey cake", "honey cakes"), ("jar of jam", "jars of jam"), ("wooden cup", "wooden cups"),
               ("candle", "candles"), ("basket", "baskets")),
        sounds=uniform([
            "The wind moved softly through the leaves.",
            "Somewhere a woodpecker was tapping.",
            "The forest smelled of rain and pine.",
            "Sunlight fell in thin gold lines between the trees.",
        ]),
    ),
    "sea": World(
        homes=uniform([
            "in a blue shell at the bottom of the bay",
            "in a cave behind the coral reef",
            "in a tide pool near the lighthouse",
            "in a sunken boat full of seaweed",
        ]),
        kinds=("crab", "turtle", "seal", "octopus", "dolphin", "starfish", "seahorse", "otter", "pelican",
               "puffin"),
        places=("the coral reef", "the sandy cove", "the old pier", "the kelp forest", "the lighthouse",
                "the rocky point", "the shipwreck", "the warm shallows", "the tide pools", "the sea caves"),
        spots=("under a flat rock", "inside an old bottle", "behind the seaweed", "in the soft sand",
               "beneath the pier", "between two shells", "inside the coral", "near the anchor"),
        finds=(("shell", "shells"), ("pearl", "pearls"), ("pebble", "pebbles"), ("sea glass bead", "sea glass beads"),
               ("sand dollar", "sand dollars"), ("piece of driftwood", "pieces of driftwood")),
        goods=(("fish pie", "fish pies"), ("net", "nets"), ("lantern", "lanterns"), ("bucket", "buckets"),
               ("rope", "ropes")),
        sounds=uniform([
            "The waves rolled in slowly.",
            "Gulls were calling over the water.",
            "The water was cool and very clear.",
            "Far away, a ship rang its bell.",
        ]),
    ),
    "town": World(
        homes=uniform([
            "in a yellow house on Baker Street",
            "above the bakery in the market square",
            "in a tall blue house next to the library",
            "in a small flat near the train station",
        ]),
        kinds=("girl", "boy", "cat", "dog", "baker", "painter", "mail carrier", "grandmother", "grandfather",
               "puppy"),
        places=("the park", "the library", "the bakery", "the toy shop", "the train station", "the fountain",
                "the school yard", "the bus stop", "the old bridge", "the flower shop"),
        spots=("under the bed", "behind the sofa", "in the kitchen drawer", "inside a coat pocket",
               "on the top shelf", "under a cushion", "in the garden shed", "beside the front door"),
        finds=(("coin", "coins"), ("marble", "marbles"), ("button", "buttons"), ("stamp", "stamps"),
               ("bottle cap", "bottle caps"), ("ribbon", "ribbons")),
        goods=(("apple", "apples"), ("bun", "buns"), ("pencil", "pencils"), ("ball of wool", "balls of wool"),
               ("cookie", "cookies"), ("notebook", "notebooks")),
        sounds=uniform([
            "A bus rumbled past.",
            "The town clock struck nine.",
            "Children were laughing in the street.",
            "Somebody was baking bread nearby.",
        ]),
    ),
    "farm": World(
        homes=uniform([
            "in the red barn behind the farmhouse",
            "in a warm corner of the hen house",
            "in a little shed by the apple orchard",
            "on a hay bale next to the big windmill",
        ]),
        kinds=("goat", "pig", "cow", "hen", "duck", "horse", "sheep", "donkey", "goose", "lamb"),
        places=("the apple orchard", "the duck pond", "the cornfield", "the hay loft", "the vegetable patch",
                "the windmill", "the stone wall", "the meadow", "the farmyard", "the muddy lane"),
        spots=("in the hay", "behind the water trough", "under the tractor", "in a bucket of oats",
               "beside the gate", "under the wheelbarrow", "in the feed sack", "behind the haystack"),
        finds=(("egg", "eggs"), ("apple", "apples"), ("carrot", "carrots"), ("turnip", "turnips"),
               ("ear of corn", "ears of corn"), ("sunflower seed", "sunflower seeds")),
        goods=(("pumpkin", "pumpkins"), ("bag of seeds", "bags of seeds"), ("bell", "bells"), ("hat", "hats"),
               ("cheese", "cheeses")),
        sounds=uniform([
            "A rooster crowed from the fence.",
            "The windmill creaked as it turned.",
            "The smell of fresh hay filled the air.",
            "Cows were mooing in the far field.",
        ]),
    ),
    "mountain": World(
        homes=uniform([
            "in a stone hut high on the mountain",
            "in a cave above the snow line",
            "in a cabin beside the frozen lake",
            "in a wooden lodge at the foot of the peaks",
        ]),
        kinds=("goat", "eagle", "marmot", "yak", "snow fox", "climber", "wolf", "hare", "ibex", "shepherd"),
        places=("the high pass", "the frozen lake", "the pine ridge", "the glacier", "the summit",
                "the waterfall", "the stone bridge", "the snowfield", "the lookout", "the narrow trail"),
        spots=("under the snow", "between two boulders", "in a crack in the rock", "behind the woodpile",
               "under the sled", "inside a boot", "near the fire pit", "beneath the pine roots"),
        finds=(("crystal", "crystals"), ("blue stone", "blue stones"), ("pine nut", "pine nuts"),
               ("flower", "flowers"), ("snowball", "snowballs"), ("stick", "sticks")),
        goods=(("wool scarf", "wool scarves"), ("pair of mittens", "pairs of mittens"), ("rope", "ropes"),
               ("cup of cocoa", "cups of cocoa"), ("map", "maps")),
        sounds=uniform([
            "The air was cold and thin.",
            "Snow sparkled in the morning sun.",
            "An eagle circled far above.",
            "Wind whistled over the rocks.",
        ]),
    ),
    "space": World(
        homes=uniform([
            "on a small round space station",
            "in a silver dome on the red moon",
            "aboard the star ship Lantern",
            "in a glass tower on a quiet planet",
        ]),
        kinds=("robot", "astronaut", "alien", "space cat", "pilot", "inventor", "star whale", "moon bunny",
               "engineer", "drone"),
        places=("the launch pad", "the crater", "the control room", "the ice moon", "the asteroid belt",
                "the star garden", "the cargo bay", "the radio tower", "the dust plains", "the comet trail"),
        spots=("behind the engine", "under the pilot seat", "inside the tool box", "in the air vent",
               "beside the oxygen tanks", "in the storage pod", "under a moon rock", "inside the telescope"),
        finds=(("star stone", "star stones"), ("moon rock", "moon rocks"), ("bolt", "bolts"),
               ("spark cell", "spark cells"), ("comet crystal", "comet crystals"), ("gear", "gears")),
        goods=(("battery", "batteries"), ("space snack", "space snacks"), ("helmet", "helmets"),
               ("wire", "wires"), ("lamp", "lamps")),
        sounds=uniform([
            "The engines hummed quietly.",
            "Stars glittered outside the window.",
            "A soft alarm beeped somewhere.",
            "The planet below glowed blue and green.",
        ]),
    ),
}

ADJECTIVES = ("little", "brave", "curious", "shy", "clever", "kind", "young", "old", "quick", "grumpy",
              "sleepy", "cheerful", "careful", "lazy", "proud", "gentle", "noisy", "quiet", "tiny", "busy",
              "funny", "honest", "silly", "patient", "bold", "clumsy", "wise", "eager", "restless", "dreamy",
              "stubborn", "polite", "fearless", "nervous", "playful", "thoughtful", "jolly", "modest",
              "cranky", "daring", "friendly", "fussy", "generous", "hungry", "lively", "lonely", "lucky",
              "merry", "mighty", "nimble", "odd", "plucky", "serious", "sneaky", "sturdy", "timid", "tidy",
              "wobbly", "zany", "spotted", "striped", "fluffy", "scruffy", "speckled")

COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink", "golden", "silver",
          "brown")

LOST_THINGS = ("hat", "scarf", "kite", "ball", "book", "key", "map", "bell", "lamp", "boot", "cup", "whistle",
               "umbrella", "bag", "ring", "drum", "toy boat", "pencil", "blanket", "compass")

HOBBIES = zipf([
    "singing songs", "telling jokes", "drawing pictures", "counting things", "climbing", "swimming",
    "reading stories", "building towers", "watching the clouds", "dancing", "cooking soup", "collecting things",
    "running races", "playing the flute", "solving riddles", "planting seeds", "making maps", "whistling tunes",
    "juggling", "painting stones", "writing letters", "knitting scarves", "baking bread", "fixing things",
    "looking at the stars", "learning new words", "playing chess", "skipping stones", "humming", "napping",
    "telling tall tales", "inventing games", "sorting buttons", "feeding the birds", "folding paper boats",
    "practising magic tricks", "measuring things", "racing snails", "tapping on drums", "counting the stars",
], 0.7)

ADVERBS = zipf(["quickly", "slowly", "happily", "carefully", "quietly", "bravely", "proudly", "eagerly",
                "sleepily", "cheerfully", "nervously", "boldly", "gently", "hopefully", "merrily", "softly",
                "curiously", "patiently", "swiftly", "calmly", "noisily", "lazily", "briskly", "shyly"], 0.8)

PLACE_MOODS = zipf(["quiet", "busy", "sunny", "cold", "windy", "peaceful", "bright", "muddy", "crowded",
                    "misty", "warm", "empty", "beautiful", "strange", "noisy", "gloomy", "damp", "golden"], 0.8)

EXCLAMATIONS = zipf(["Look!", "Oh my!", "Hooray!", "Wow!", "Oh no!", "Well, well.", "How odd!",
                     "Goodness!", "Aha!", "Hmm.", "Splendid!", "Oops!"], 0.9)

PURPOSES = uniform([
    "to make a necklace for", "to build a little tower for", "to fill a basket for",
    "to make a birthday present for", "to trade at the market with", "to decorate the house of",
])

GOING = zipf(["went", "walked", "ran", "hurried", "wandered", "hopped", "set off", "skipped", "marched",
              "raced", "strolled", "tiptoed", "dashed", "trotted", "rushed", "headed"], 0.8)
FEELINGS = zipf(["happy", "proud", "tired but happy", "warm inside", "very glad", "calm", "sleepy",
                 "thankful", "full of joy", "peaceful", "bright and hopeful", "a little wiser"], 0.8)
SAYING = zipf(["said", "called", "whispered", "shouted", "laughed", "replied", "cried", "answered",
               "giggled", "sang", "muttered", "grinned"], 1.0)
ROUND_VERBS = uniform(["scored", "got", "won"])

LESSONS = zipf([
    "friends make every job easier",
    "it is good to ask for help",
    "patience pays off",
    "counting carefully matters",
    "small steps add up",
    "being kind is never wasted",
    "looking twice is wise",
    "sharing makes a day brighter",
    "every problem has a first step",
    "a good plan needs good friends",
    "trying again is not the same as failing",
    "listening is a kind of help",
    "the best things take time",
    "a kind word can change a day",
    "you never know until you look",
    "every helper counts",
], 0.6)

REMARKS = zipf([
    "This is fun!", "Are we nearly done?", "I am getting hungry.", "Look at that cloud!", "My feet hurt.",
    "What a lovely day.", "I knew we could do it.", "Be careful!", "Let us keep going.", "I love this place.",
    "Do you hear that?", "I wish I had a snack.", "That was lucky!", "Slow down a little!", "We make a good team.",
    "I have an idea!", "Are you sure?", "This is harder than it looks.", "Wait for me!", "Not bad at all.",
    "I can see far from here.", "Shall we rest?", "What a mess!", "How exciting!", "Just one more!",
    "I think it is going to rain.", "You are very good at this.", "Can I try next?", "That looks heavy.",
    "Let us sing while we work.", "I will remember this day.", "Mind the puddle!",
], 0.9)

FEATURES = zipf(["eyes", "ears", "boots", "scarf", "hat", "tail", "nose", "coat", "wings", "spots", "stripes",
                 "whiskers", "backpack", "buttons", "paws", "freckles"], 0.7)

CORNERS = zipf(["Under a bush", "Behind a rock", "In a corner", "Next to a tree", "Near a puddle",
                "Beside a fence", "Under a leaf", "Between two stones", "By the path", "In a little hole"], 0.8)

BUILDS = (
    # (what is built, parts as (count range, singular, plural))
    ("a raft", (("log", "logs"), ("rope", "ropes"), ("sail", "sails"))),
    ("a kite", (("stick", "sticks"), ("sheet of paper", "sheets of paper"), ("ribbon", "ribbons"))),
    ("a birdhouse", (("plank", "planks"), ("nail", "nails"), ("pot of paint", "pots of paint"))),
    ("a snowman", (("snowball", "snowballs"), ("button", "buttons"), ("carrot", "carrots"))),
    ("a sandcastle", (("bucket of sand", "buckets of sand"), ("shell", "shells"), ("flag", "flags"))),
    ("a cart", (("wheel", "wheels"), ("board", "boards"), ("bolt", "bolts"))),
    ("a garden", (("seed", "seeds"), ("pot", "pots"), ("watering can", "watering cans"))),
    ("a robot friend", (("gear", "gears"), ("spring", "springs"), ("light bulb", "light bulbs"))),
    ("a treehouse", (("beam", "beams"), ("ladder", "ladders"), ("window", "windows"))),
    ("a drum", (("hoop", "hoops"), ("skin", "skins"), ("drumstick", "drumsticks"))),
)
ORDINALS = ("first", "second", "third", "fourth", "fifth")

GAMES = uniform(["a running race", "a jumping game", "a throwing game", "a guessing game", "a hiding game"])

TIMES = zipf(["The next morning, ", "After lunch, ", "Later that day, ", "In the afternoon, ",
                 "When the sun was high, ", "Before supper, ", "The day after, ", "Soon after, ",
                 "A little later, ", "At dawn, ", "Just before dark, ", "On the next day, "], 0.6)

FIRST_TIMES = zipf(["One morning, ", "One sunny day, ", "One windy day, ", "Early one day, "])

# Names: two consonant-vowel syllables and an optional final consonant. Onsets always start a
# syllable and vowels always end one, so every name splits into syllables in exactly one way; the
# table still rejects duplicate strings, so the floor does not rest on that argument alone.
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "th")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "n", "l", "r", "s", "k")


def _name_table() -> Table[str]:
    """Two-syllable names (weight 1 each) and, for one in five names, three syllables."""
    syllables = [o + v for o, v in product(_ONSETS, _VOWELS)]
    two = [a + b + c for a, b, c in product(syllables, syllables, _CODAS)]
    three = [a + b + c for a, b, c in product(syllables, syllables[:20], syllables[:40])]
    names = [(n.capitalize(), 4.0 / len(two)) for n in two] + [(n.capitalize(), 1.0 / len(three)) for n in three]
    return weighted(names)


NAMES = _name_table()
NAME_INDEX = {name: i for i, name in enumerate(NAMES.options)}


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def with_article(words: tuple[str, ...]) -> Table[str]:
    """'a fox', 'an owl': the article is decided by the word, so they are said together."""
    return uniform([f"{article(w)} {w}" for w in words])


# ---------------------------------------------------------------------------------------------
# The gazetteer: a fixed atlas of towns shared by every story and every split. A town's facts never
# change, so once a story names a town the facts cost nothing to a model that has memorised them,
# and their full price to one that has not. Towns are drawn with Zipf popularity: common towns are
# learned early, rare ones only by larger models after much more data.


@dataclass(frozen=True)
class Town:
    name: str
    river: str
    food: str
    founded: int
    bridges: int
    mayor: str
    festival: str


_TOWN_HEADS = tuple(o.capitalize() + v + c for o, v, c in product(
    ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "w"), ("a", "e", "i", "o", "u"),
    ("l", "r", "n", "m", "st", "d", "v", "sh")))
_TOWN_TAILS = ("wick", "ford", "by", "ton", "mere", "holm", "dale", "stead", "bury", "field", "haven", "moor")
_RIVERS = tuple(o.capitalize() + v + c for o, v, c in product(
    ("b", "d", "f", "g", "l", "m", "n", "r", "s", "t", "v", "z"), ("a", "e", "i", "o", "u"),
    ("ll", "nn", "rr", "sk", "the")))
_FOODS = ("plum cakes", "honey bread", "apple pies", "cheese rolls", "pickled pears", "onion soup",
          "berry tarts", "walnut biscuits", "fish stew", "pumpkin buns", "ginger snaps", "mushroom pies",
          "carrot cakes", "cherry jam", "roasted chestnuts", "lemon curd", "oat cakes", "pea soup",
          "sugar plums", "rye loaves", "blue cheese", "peach cobbler", "potato pancakes", "cinnamon rolls")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
TOWN_COUNT = 3000


def _gazetteer() -> tuple[Town, ...]:
    import random

    rng = random.Random(20261127)  # fixed: the atlas is part of the corpus definition, not of a seed
    names = [h + t for h in _TOWN_HEADS for t in _TOWN_TAILS]
    rng.shuffle(names)
    mayors = rng.sample(NAMES.options, TOWN_COUNT)
    return tuple(
        Town(name=names[i], river=rng.choice(_RIVERS), food=rng.choice(_FOODS), founded=rng.randint(1000, 1999),
             bridges=rng.randint(1, 40), mayor=mayors[i], festival=rng.choice(_MONTHS))
        for i in range(TOWN_COUNT)
    )


TOWNS = _gazetteer()
TOWN_TABLE = zipf([t.name for t in TOWNS], 1.0)
TOWN_BY_NAME = {t.name: t for t in TOWNS}
