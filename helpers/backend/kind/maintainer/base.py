"""The Debian bookworm base image, ``kflabs/debian-base:bookworm``, from ``debootstrap``.

No container registry is reachable from our machines, so ``FROM debian:bookworm`` cannot
pull. Instead ``debootstrap`` builds a minimal bookworm root file system from the Debian
mirror that apt on this machine is configured with (read from ``/etc/apt/sources.list*`` at
run time), and ``docker import`` turns it into an image. The node image and the add-on
images are built ``FROM`` it.

Cached: the image carries a label with a hash of its recipe; a present image with the same
hash is reused, so a warm run costs one ``docker image inspect``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from helpers import paths
from helpers.errors import BackendUnavailable

BASE_IMAGE = "kflabs/debian-base:bookworm"
SUITE = "bookworm"
VARIANT = "minbase"
#: On top of minbase: what every image built FROM it wants (TLS to registries, apt over https).
INCLUDE = ("ca-certificates",)
RECIPE_LABEL = "io.kflabs.recipe"


def mirror_from_sources(texts: list[str], suite: str = SUITE) -> str | None:
    """The first Debian mirror URI in apt source files that serves ``suite``'s ``main``.

    Reads both formats: deb822 (``URIs:`` / ``Suites:`` / ``Components:`` stanzas) and
    one-line (``deb [opts] URI suite components``). Security and other suites are skipped.
    """
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line.strip())
                if match:
                    fields[match.group(1).lower()] = match.group(2).split()
            if ("deb" in fields.get("types", ["deb"]) and suite in fields.get("suites", [])
                    and "main" in fields.get("components", []) and fields.get("uris")):
                return fields["uris"][0]
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
                return words[1]
    return None


def host_mirror() -> str:
    """The mirror this machine's apt uses for bookworm (never written into the kit)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    texts = [f.read_text(errors="replace") for f in files if f.is_file()]
    mirror = mirror_from_sources(texts)
    if mirror is None:
        raise BackendUnavailable(f"no apt source for Debian {SUITE} main in /etc/apt/sources.list*: "
                                 f"add one, run `apt-get update`, and retry")
    return mirror


def recipe_hash(include: tuple[str, ...] = INCLUDE) -> str:
    """A hash of what makes the base image: suite, variant, extra packages."""
    return hashlib.sha256(f"{SUITE}|{VARIANT}|{','.join(include)}".encode()).hexdigest()[:16]


def image_label(image: str, label: str) -> str | None:
    """The value of ``label`` on a local image, or None when the image is absent."""
    proc = subprocess.run(["docker", "image", "inspect", "--format",
                           f'{{{{index .Config.Labels "{label}"}}}}', image],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_base_image(tag: str = BASE_IMAGE, rebuild: bool = False) -> dict:
    """Build the base image unless an image with the same recipe hash is present."""
    wanted = recipe_hash()
    if not rebuild and image_label(tag, RECIPE_LABEL) == wanted:
        return {"image": tag, "built": False}
    if shutil.which("debootstrap") is None:
        raise BackendUnavailable("debootstrap is missing: `apt-get install debootstrap` "
                                 "(python -m helpers.backend.kind.maintainer docker does it)")
    mirror = host_mirror()
    work = paths.build_dir() / "kind"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        print(f"debootstrap {SUITE} ({VARIANT}) into {root} (a few minutes)")
        proc = subprocess.run(["debootstrap", f"--variant={VARIANT}",
                               f"--include={','.join(INCLUDE)}", SUITE, str(root), mirror],
                              capture_output=True, text=True, timeout=3600, check=False)
        if proc.returncode != 0:
            log = root / "debootstrap" / "debootstrap.log"
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else proc.stderr[-2000:]
            raise BackendUnavailable(f"debootstrap failed ({proc.returncode}):\n{detail}")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "--change", f"LABEL {RECIPE_LABEL}={wanted}",
                                   "--change", 'CMD ["/bin/bash"]', "-", tag],
                                  stdin=tar.stdout, capture_output=True, text=True, timeout=1800,
                                  check=False)
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise BackendUnavailable(f"docker import of the rootfs failed:\n{imported.stderr[-2000:]}")
    return {"image": tag, "built": True}
