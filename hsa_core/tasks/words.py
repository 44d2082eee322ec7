"""Word lists for keys, values and grammar-made filler (fixed, so samples are reproducible)."""

ADJECTIVES = (
    "able acid angry brave bright broad calm cheerful clever cold cool crisp curious damp dark deep "
    "eager early easy empty faint fancy fast fierce flat fresh gentle giant glad golden grand green "
    "happy heavy hollow honest huge humble icy jolly keen kind large lazy little lively loud lucky "
    "mellow mighty modest narrow neat noble odd pale patient plain polite proud purple quick quiet "
    "rapid rare red rich rough round royal rusty sandy sharp shiny silent silver simple sleepy slow "
    "small smooth soft solid sour spare steady sticky stout strange strong sunny sweet swift tall "
    "tame tender thick tidy tiny tough true vast warm wet white wide wild wise witty young zealous"
).split()

NOUNS = (
    "anchor apple arrow badge banjo barrel basket beacon bell blanket bottle bridge bucket button "
    "cabin camel candle canoe canyon carpet castle cedar chair cherry circus cliff clock cloud comet "
    "copper cottage crystal dagger desert dolphin donkey dragon drum eagle ember engine falcon "
    "feather fiddle forest fountain garden giraffe glacier harbor harp hammer helmet hill honey "
    "island jacket jungle kettle ladder lantern lemon lighthouse lizard magnet maple marble meadow "
    "mirror monkey mountain needle oasis orchard otter owl paddle panda parrot pebble pepper piano "
    "pillow planet pocket pond puzzle quarry rabbit raven ribbon river rocket saddle sail scarf "
    "shadow shell signal spider spoon squirrel statue stone storm tiger tower trumpet tulip tunnel "
    "turtle valley violin volcano wagon walnut whistle window wizard yacht zebra"
).split()

VERBS = (
    "admires avoids builds carries chases cleans crosses draws finds follows guards holds joins keeps "
    "leaves lifts meets moves opens paints passes pulls pushes reaches sees shows sorts touches "
    "visits watches"
).split()

PLACES = (
    "near the river,in the old town,behind the barn,across the valley,under the bridge,by the harbor,"
    "at the market,on the hill,inside the cabin,along the road,in the forest,beside the lake"
).split(",")
