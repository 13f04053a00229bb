"""Writes the small RGB ImageFolder of JPEGs (and a few PNGs) that CLITests trains a classifier
on: three classes told apart by colour, images of mixed sizes and modes (RGB, CMYK, gray PNG),
one class with a nested folder. Run once with Pillow; the files are committed.

    python3 Tests/Inputs/jpeg-folder/make_folder.py
"""
import os, random, shutil
from PIL import Image, ImageDraw

here = os.path.dirname(os.path.abspath(__file__))
random.seed(11)
colours = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 210)}
for split, count in (("train", 16), ("val", 6)):
    shutil.rmtree(os.path.join(here, split), ignore_errors=True)
    for name, (r, g, b) in colours.items():
        for i in range(count):
            width, height = random.choice([(20, 16), (24, 24), (30, 20), (16, 16)])
            jitter = lambda v: max(0, min(255, v + random.randint(-50, 50)))
            image = Image.new("RGB", (width, height), (jitter(r), jitter(g), jitter(b)))
            draw = ImageDraw.Draw(image)
            for _ in range(3):  # distractors of any colour
                x, y = random.randrange(width), random.randrange(height)
                draw.rectangle([x, y, x + 4, y + 3], fill=tuple(random.randrange(256) for _ in range(3)))
            folder = os.path.join(here, split, name, "nested" if (name == "green" and i % 4 == 0) else "")
            os.makedirs(folder, exist_ok=True)
            if i == 5:
                image.convert("CMYK").save(os.path.join(folder, f"{i}.jpg"), quality=85)
            else:
                image.save(os.path.join(folder, f"{i}.jpg"), quality=85)
print("wrote", sum(len(files) for _, _, files in os.walk(here)) - 1, "images")
