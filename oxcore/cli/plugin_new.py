"""``oxcore plugin new NAME --kind backend|kernels|format [--dir DIR]``: a ready plugin package.

The templates are files under ``oxcore/templates/`` (``common/`` plus one folder per kind),
shipped as package data. ``{{key}}`` tokens are filled in (only known keys: a GitHub Actions
``${{ matrix.os }}`` stays as it is); in paths, ``__module__`` becomes the package's module,
``__name__`` the plugin name, a ``dot-`` prefix a dot, and ``.tmpl`` is dropped.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import click

from . import main

KINDS = {
    "backend": ("An oxcore backend: device {name} and kernels on it", "--oxcore-backend {name}"),
    "kernels": ("Kernels for oxcore backends owned by other packages", "--oxcore-backend cpu_numpy -k relu"),
    "format": ("The oxcore file format {name} (a placeholder container, .ox{name} files)", "--oxcore-format {name}"),
}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def names(name: str) -> dict[str, str]:
    """Every spelling of a plugin name: ``fast-norm`` -> ``fast_norm``, ``oxcore-fast-norm``,
    ``oxcore_fast_norm``, ``FastNorm``. An ``oxcore-``/``oxcore_`` prefix is optional."""
    base = re.sub(r"^oxcore[-_]", "", name.strip()).replace("-", "_")
    if not NAME_RE.match(base) or base.endswith("_"):
        raise click.BadParameter(f"{name!r} is not a valid plugin name: expected lower-case letters, digits, "
                                 "'-' or '_', starting with a letter (e.g. 'fastnorm', 'my-backend')",
                                 param_hint="NAME")
    dist = "oxcore-" + base.replace("_", "-")
    return {"name": base, "dist": dist, "module": dist.replace("-", "_"),
            "class_name": "".join(p.capitalize() for p in base.split("_")),
            "magic": ("OX" + base.upper().replace("_", ""))[:8].ljust(8, "0")}


def render(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), text)


def template_files(kind: str) -> dict[str, str]:
    """Relative output path (still with ``__module__``/``__name__``) -> template text."""
    root = resources.files("oxcore") / "templates"
    out: dict[str, str] = {}
    for part in ("common", kind):  # NOTE: a kind's file overrides the common one of that path
        stack = [(root / part, "")]
        while stack:
            node, rel = stack.pop()
            for child in node.iterdir():
                if child.name == "__pycache__":
                    continue
                name = "." + child.name[4:] if child.name.startswith("dot-") else child.name
                path = f"{rel}/{name}" if rel else name
                if child.is_dir():
                    stack.append((child, path))
                elif name.endswith(".tmpl"):
                    out[path[:-5]] = child.read_text(encoding="utf-8")
    return out


def generate(name: str, kind: str, parent: Path) -> Path:
    """Write the package for plugin ``name`` of ``kind`` into ``parent``; return its folder."""
    import oxcore
    from .._plugins import PLUGIN_API

    if kind not in KINDS:
        raise click.BadParameter(f"{kind!r}; valid kinds are: {', '.join(KINDS)}", param_hint="--kind")
    values = names(name)
    description, kit = KINDS[kind]
    values.update(description=description.format(**values), kit_args=kit.format(**values),
                  plugin_api=str(PLUGIN_API), oxcore_version=oxcore.__version__, kind=kind)
    target = parent / values["dist"]
    if target.exists() and any(target.iterdir()):
        raise click.ClickException(f"{target} already exists and is not empty; choose another --dir or name")
    for rel, text in sorted(template_files(kind).items()):
        path = target / rel.replace("__module__", values["module"]).replace("__name__", values["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(text, values), encoding="utf-8")
    return target


@main.group()
def plugin() -> None:
    """Write oxcore plugins."""


@plugin.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(sorted(KINDS)), required=True,
              help="backend (a device and its kernels), kernels (for existing backends) or format.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder to create the package in (as DIR/oxcore-NAME).")
def plugin_new(name: str, kind: str, parent: Path) -> None:
    """Generate a plugin package ready to install, test and publish.

    It has a pyproject.toml with the ``oxcore`` entry point, a skeleton that passes the
    conformance kit as generated, tests, a GitHub Actions workflow and a README.
    """
    target = generate(name, kind, parent)
    v = names(name)
    kit = KINDS[kind][1].format(**v)
    click.echo(f"Created {target} ({v['dist']}, module {v['module']}, entry point {v['name']}).\n"
               f"Next:\n  cd {target}\n  pip install -e '.[test]'\n  oxcore plugins list\n"
               f"  pytest tests\n  pytest {kit}")
