"""Writes the JPEG fixtures of Tests/DatasetsTests/JPEGTests.swift and, beside each, PIL's decode
of it as a PNG (what Percept's decoder must give, pixel for pixel). Run once with Pillow
installed (python3 -m pip install pillow); the outputs are committed, so tests need no Pillow.

    python3 Tests/Inputs/jpeg/make_fixtures.py
"""
import ctypes, ctypes.util, io, os, random
from PIL import Image, ImageOps

here = os.path.dirname(os.path.abspath(__file__))
random.seed(7)


def picture(width, height, mode="RGB"):
    """A photo-like test picture: smooth gradients, edges and some noise, not symmetric."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            r = (x * 255) // max(1, width - 1)
            g = (y * 255) // max(1, height - 1)
            b = 255 if (x // 5 + y // 3) % 2 else 40
            if x < width // 4 and y < height // 3:
                r, g, b = 250, 20, 20  # a red corner marks the orientation
            pixels[x, y] = tuple(min(255, max(0, v + random.randint(-12, 12))) for v in (r, g, b))
    return image.convert(mode)


def save(name, image, **options):
    path = os.path.join(here, name + ".jpg")
    image.save(path, "JPEG", **options)
    decoded = ImageOps.exif_transpose(Image.open(path))
    decoded = decoded.convert("L" if decoded.mode == "L" else "RGB")
    decoded.save(os.path.join(here, name + ".pil.png"))
    # The same decode converted to the other channel count, by PIL's rules.
    other = decoded.convert("RGB" if decoded.mode == "L" else "L")
    other.save(os.path.join(here, name + ".pil-" + ("rgb" if decoded.mode == "L" else "gray") + ".png"))


save("gray", picture(37, 23, "L"), quality=90)
save("rgb-420", picture(37, 23), quality=85, subsampling=2)
save("rgb-444", picture(37, 23), quality=95, subsampling=0)
save("rgb-422", picture(36, 22), quality=80, subsampling=1)
save("progressive", picture(41, 29), quality=88, progressive=True)
save("cmyk", picture(37, 23).convert("CMYK"), quality=92)
for orientation in range(1, 9):
    exif = Image.Exif()
    exif[0x0112] = orientation
    save(f"orientation-{orientation}", picture(13, 7), quality=95, subsampling=0, exif=exif.tobytes())

# YCCK: libjpeg-turbo's TurboJPEG compresses CMYK pixels to YCCK.
library = ctypes.CDLL(ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0")
library.tjInitCompress.restype = ctypes.c_void_p
library.tjCompress2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ulong), ctypes.c_int, ctypes.c_int, ctypes.c_int]
library.tjFree.argtypes = [ctypes.c_void_p]
cmyk = picture(33, 21).convert("CMYK")
raw = bytes(255 - v for v in cmyk.tobytes())  # Adobe's inverted CMYK, as Photoshop stores it
handle = library.tjInitCompress()
buffer, size = ctypes.c_void_p(), ctypes.c_ulong(0)
TJPF_CMYK, TJSAMP_420 = 11, 2
assert library.tjCompress2(handle, raw, 33, 0, 21, TJPF_CMYK, ctypes.byref(buffer), ctypes.byref(size), TJSAMP_420, 90, 0) == 0
data = ctypes.string_at(buffer, size.value)
library.tjFree(buffer)
with open(os.path.join(here, "ycck.jpg"), "wb") as out:
    out.write(data)
decoded = Image.open(os.path.join(here, "ycck.jpg"))
assert decoded.mode == "CMYK", decoded.mode
decoded.convert("RGB").save(os.path.join(here, "ycck.pil.png"))

# Broken files: cut short, and scan data overwritten.
whole = open(os.path.join(here, "rgb-420.jpg"), "rb").read()
open(os.path.join(here, "truncated.jpg"), "wb").write(whole[: len(whole) * 2 // 3])
scan = whole.index(b"\xff\xda")
corrupt = bytearray(whole)
for i in range(scan + 40, min(len(whole) - 2, scan + 90)):
    corrupt[i] = 0xFF if i % 7 == 0 else (corrupt[i] ^ 0x5A)
open(os.path.join(here, "corrupt.jpg"), "wb").write(bytes(corrupt))
# 12-bit and lossless frames: a baseline file whose frame header says so.
sof = whole.index(b"\xff\xc0")
twelve = bytearray(whole); twelve[sof + 4] = 12
open(os.path.join(here, "12bit.jpg"), "wb").write(bytes(twelve))
lossless = bytearray(whole); lossless[sof + 1] = 0xC3
open(os.path.join(here, "lossless.jpg"), "wb").write(bytes(lossless))
print("wrote", sorted(os.listdir(here)))
