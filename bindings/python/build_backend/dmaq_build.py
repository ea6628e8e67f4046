"""PEP 517 build backend of the dmaq Python package.

Why not setuptools alone: building a wheel with setuptools before 70.1
needs the `wheel` package, which the Pythons we target do not have and
cannot fetch (no PyPI). A wheel is a zip with three metadata files, so this
backend writes it itself, with the standard library only, and needs nothing
installed: `pip install --no-build-isolation ./bindings/python` and
`pip wheel --no-build-isolation ./bindings/python` both work offline.

The wheel ships libdmaq.so inside the package. It is built from the C
sources with cmake (the repository's, or the copy an sdist carries in
csrc/), unless DMAQ_LIBRARY names an already built libdmaq.so.
"""
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sysconfig
import tarfile
import tempfile
import tomllib
import zipfile

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_FILES = ("__init__.py", "_native.py", "py.typed")
# What an sdist carries of the C library, relative to the repository root.
C_SOURCES = ("CMakeLists.txt", "cmake", "core", "tools")


def _c_root():
    csrc = os.path.join(PACKAGE_ROOT, "csrc")
    if os.path.isfile(os.path.join(csrc, "CMakeLists.txt")):
        return csrc
    return os.path.normpath(os.path.join(PACKAGE_ROOT, "..", ".."))


def _version():
    header = os.path.join(_c_root(), "core", "include", "dmaq", "dmaq.h")
    with open(header, encoding="utf-8") as f:
        match = re.search(r'#define DMAQ_VERSION_STRING "([^"]+)"', f.read())
    if not match:
        raise RuntimeError(f"no DMAQ_VERSION_STRING in {header}")
    return match.group(1)


def _project():
    with open(os.path.join(PACKAGE_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _metadata():
    project = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {_version()}",
        f"Summary: {project['description']}",
        f"Requires-Python: {project['requires-python']}",
    ]
    lines += [f"Classifier: {c}" for c in project.get("classifiers", [])]
    with open(os.path.join(PACKAGE_ROOT, project["readme"]), encoding="utf-8") as f:
        readme = f.read()
    return "\n".join(lines) + "\nDescription-Content-Type: text/markdown\n\n" + readme


def _tag():
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{platform}"  # ctypes only: any Python 3, this platform


def _dist_info_name():
    return f"dmaq-{_version()}.dist-info"


def _write_dist_info(directory):
    info = os.path.join(directory, _dist_info_name())
    os.makedirs(info, exist_ok=True)
    files = {
        "METADATA": _metadata(),
        "WHEEL": f"Wheel-Version: 1.0\nGenerator: dmaq_build\nRoot-Is-Purelib: false\nTag: {_tag()}\n",
        "top_level.txt": "dmaq\n",
    }
    for name, text in files.items():
        with open(os.path.join(info, name), "w", encoding="utf-8") as f:
            f.write(text)
    return os.path.basename(info)


def _build_library(work):
    given = os.environ.get("DMAQ_LIBRARY")
    if given:
        if not os.path.isfile(given):
            raise RuntimeError(f"DMAQ_LIBRARY={given} is not a file")
        return os.path.realpath(given)
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("building libdmaq.so needs cmake (apt-get install -y cmake gcc libxxhash-dev)")
    build = os.path.join(work, "cmake-build")
    subprocess.run([cmake, "-S", _c_root(), "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DDMAQ_BUILD_TESTS=OFF",
                    "-DDMAQ_BUILD_BENCH=OFF", "-DDMAQ_BUILD_EXAMPLES=OFF"], check=True, stdout=subprocess.DEVNULL)
    targets = ["dmaq"]
    for plugin in ("dmaq-tcp", "dmaq-rdma"):  # configured where their libraries are (libsodium, zstd, librdmacm)
        if os.path.exists(os.path.join(build, "CMakeFiles", f"{plugin}.dir")):
            targets.append(plugin)
    subprocess.run([cmake, "--build", build, "--target", *targets, "-j", str(os.cpu_count() or 1)], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.realpath(os.path.join(build, "libdmaq.so"))


def _plugins(library):
    """The transport plugins built next to libdmaq.so (libdmaq-tcp.so, ...):
    the wheel ships them beside it, where the library's loader looks."""
    here = os.path.dirname(library)
    return sorted(n for n in os.listdir(here) if n.startswith("libdmaq-") and n.endswith(".so")
                  and not n.startswith("libdmaq-test"))


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


# ---- PEP 517 hooks ----------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_dist_info(metadata_directory)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version = _version()
    with tempfile.TemporaryDirectory() as work:
        contents = {}
        for name in SOURCE_FILES:
            with open(os.path.join(PACKAGE_ROOT, "src", "dmaq", name), "rb") as f:
                contents[f"dmaq/{name}"] = f.read()
        contents["dmaq/_version.py"] = f'__version__ = "{version}"\n'.encode()
        library = _build_library(work)
        with open(library, "rb") as f:
            contents["dmaq/libdmaq.so"] = f.read()
        for plugin in _plugins(library):
            with open(os.path.join(os.path.dirname(library), plugin), "rb") as f:
                contents[f"dmaq/{plugin}"] = f.read()
        info = _write_dist_info(work)
        for name in ("METADATA", "WHEEL", "top_level.txt"):
            with open(os.path.join(work, info, name), "rb") as f:
                contents[f"{info}/{name}"] = f.read()
        record = [_record_line(path, data) for path, data in contents.items()] + [f"{info}/RECORD,,"]
        contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
        wheel_name = f"dmaq-{version}-{_tag()}.whl"
        with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
            for path, data in contents.items():
                entry = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
                entry.external_attr = (0o755 if path.endswith(".so") else 0o644) << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(entry, data)
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    """The Python package plus the C sources (in csrc/), so the sdist builds
    its own libdmaq.so wherever it is unpacked."""
    base = f"dmaq-{_version()}"
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        for entry in ("pyproject.toml", "README.md", "build_backend", "src", "tests"):
            tar.add(os.path.join(PACKAGE_ROOT, entry), f"{base}/{entry}",
                    filter=lambda t: None if "__pycache__" in t.name else t)
        root = _c_root()
        for entry in C_SOURCES:
            tar.add(os.path.join(root, entry), f"{base}/csrc/{entry}")
        pkg_info = _metadata().encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        tar.addfile(info, io.BytesIO(pkg_info))
    return name
