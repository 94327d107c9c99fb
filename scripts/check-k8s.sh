#!/usr/bin/env bash
# Checks the Kubernetes manifests under k8s/ (k8s/grafana/ is not a manifest; the API
# tests check it):
#   1. every kustomization.yaml names files and directories that exist, and every YAML
#      file in a kustomization's directory is used by it (except *.template.yaml), so
#      nothing is silently left out of a deploy;
#   2. every standalone manifest (not a patch, not a kustomization) validates against the
#      Kubernetes schemas in strict mode (unknown fields are errors), with
#      kubernetes-validate, installed once into target/k8s-venv;
#   3. with kubectl (or kustomize) on PATH, every kustomization renders and its output,
#      patches applied, validates the same way. Without one this step is skipped, with a
#      note: partial patches cannot be validated on their own.
set -euo pipefail
cd "$(dirname "$0")/.."

KV_VERSION=1.37.0
# The oldest Kubernetes the manifests support (preStop's native sleep action is on by
# default from 1.30) and a current one (catches APIs that have been removed since).
KUBE_VERSIONS=(1.30.0 1.33.0)
VENV=target/k8s-venv

if [[ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null || true)" != "$KV_VERSION" ]]; then
  echo "installing kubernetes-validate $KV_VERSION into $VENV"
  python3 -m venv --clear "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# kubernetes-validate exits 0 when it has no schema for a kind (a typo in kind or
# apiVersion) and only prints a WARN: with --quiet, any output at all is a failure.
validate() {
  local out args=()
  for v in "${KUBE_VERSIONS[@]}"; do args+=(-k "$v"); done
  if ! out=$("$VENV/bin/kubernetes-validate" --strict --quiet "${args[@]}" "$@" 2>&1) || [[ -n "$out" ]]; then
    printf '%s\n' "$out" >&2
    return 1
  fi
}

echo "-- kustomization references"
"$VENV/bin/python" - "$tmp/standalone" "$tmp/roots" <<'PY'
"""Checks what every kustomization under k8s/ refers to; writes the standalone manifests
(to validate as they are) and the kustomizations to render."""
import os
import sys

import yaml

ROOT = "k8s"
SKIP = {os.path.join(ROOT, "grafana")}
KUSTOMIZATION = ("kustomization.yaml", "kustomization.yml", "Kustomization")
errors = []


def is_yaml(name):
    return name.endswith((".yaml", ".yml"))


def is_template(name):
    return name.endswith((".template.yaml", ".template.yml"))


def kustomization_file(directory):
    for name in KUSTOMIZATION:
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


def is_remote(ref):
    return "://" in ref or ref.startswith(("github.com/", "gitlab.com/", "bitbucket.org/", "git@"))


def strings(value):
    """A list of strings from a kustomization field (missing: none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)]


yaml_files = []  # every YAML file under k8s/ that is not a kustomization
kustomizations = []  # directories with a kustomization file
for directory, subdirs, files in os.walk(ROOT):
    subdirs[:] = sorted(d for d in subdirs if os.path.join(directory, d) not in SKIP)
    if kustomization_file(directory):
        kustomizations.append(directory)
    yaml_files += [os.path.join(directory, f) for f in sorted(files) if is_yaml(f) and f not in KUSTOMIZATION]

used = set()  # every local file a kustomization refers to
not_manifests = set()  # files used as patches, generator inputs, transformer configs
roots = []  # kustomizations that can be rendered on their own (not Components)

for directory in kustomizations:
    path = kustomization_file(directory)
    try:
        with open(path) as f:
            k = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        errors.append(f"{path}: not valid YAML: {e}")
        continue
    if k.get("kind", "Kustomization") != "Component":
        roots.append(directory)

    def ref(value, field, *, dir_ok, file_ok=True, manifest=True):
        if not isinstance(value, str) or "\n" in value or is_remote(value):
            return  # inline content or a remote base: nothing to find on disk
        target = os.path.normpath(os.path.join(directory, value))
        if os.path.isdir(target):
            if not dir_ok:
                errors.append(f"{path}: {field} '{value}' is a directory, a file is expected")
            elif not kustomization_file(target):
                errors.append(f"{path}: {field} '{value}' is a directory without a kustomization.yaml")
        elif os.path.isfile(target):
            if not file_ok:
                errors.append(f"{path}: {field} '{value}' is a file, a directory is expected")
            used.add(target)
            if not manifest:
                not_manifests.add(target)
        else:
            errors.append(f"{path}: {field} '{value}' does not exist ({target})")

    for field in ("resources", "bases", "crds"):
        for value in strings(k.get(field)):
            ref(value, field, dir_ok=field != "crds")
    for value in strings(k.get("components")):
        ref(value, "components", dir_ok=True, file_ok=False)
    for field in ("patches", "patchesJson6902", "replacements"):
        for entry in k.get(field) or []:
            if isinstance(entry, dict) and "path" in entry:
                ref(entry["path"], f"{field}[].path", dir_ok=False, manifest=False)
    for value in strings(k.get("patchesStrategicMerge")):
        ref(value, "patchesStrategicMerge", dir_ok=False, manifest=False)
    for field in ("transformers", "generators", "validators"):
        for value in strings(k.get(field)):
            ref(value, field, dir_ok=True, manifest=False)
    for field in ("configMapGenerator", "secretGenerator"):
        for gen in k.get(field) or []:
            name = gen.get("name", "?")
            for value in strings(gen.get("files")):
                ref(value.split("=", 1)[-1], f"{field} {name} files", dir_ok=False, manifest=False)
            for value in strings(gen.get("envs")) + strings(gen.get("env")):
                ref(value, f"{field} {name} envs", dir_ok=False, manifest=False)

# Every YAML file belongs to the nearest kustomization above it and must be used by it.
for file in yaml_files:
    if is_template(file):
        continue
    owner = os.path.dirname(file)
    while owner != os.path.dirname(ROOT) and not kustomization_file(owner):
        owner = os.path.dirname(owner)
    if owner == os.path.dirname(ROOT):
        errors.append(f"{file}: not under any kustomization (name it *.template.yaml if it is a template)")
    elif os.path.normpath(file) not in used:
        errors.append(f"{file}: not listed in {kustomization_file(owner)} (resources, patches or a generator)")

if errors:
    for e in errors:
        print(f"ERROR {e}", file=sys.stderr)
    sys.exit(1)

with open(sys.argv[1], "w") as f:
    f.writelines(p + "\n" for p in yaml_files if os.path.normpath(p) not in not_manifests)
with open(sys.argv[2], "w") as f:
    f.writelines(d + "\n" for d in roots)
print(f"{len(kustomizations)} kustomizations, {len(yaml_files)} YAML files: ok")
PY

echo "-- standalone manifests (Kubernetes ${KUBE_VERSIONS[*]}, strict)"
mapfile -t standalone <"$tmp/standalone"
if ((${#standalone[@]})); then
  validate "${standalone[@]}"
  printf '%s: ok\n' "${standalone[@]}"
fi

echo "-- rendered kustomizations (patches applied)"
if command -v kubectl >/dev/null 2>&1; then
  render=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
  render=(kustomize build)
else
  render=()
fi
if ((${#render[@]} == 0)); then
  echo "note: neither kubectl nor kustomize is installed: overlays not rendered, patches not validated"
else
  mapfile -t roots <"$tmp/roots"
  for dir in "${roots[@]}"; do
    out="$tmp/$(printf '%s' "$dir" | tr '/' '_').yaml"
    if ! "${render[@]}" "$dir" >"$out" 2>"$out.err"; then
      echo "ERROR $dir does not render:" >&2
      cat "$out.err" >&2
      exit 1
    fi
    validate "$out" || { echo "ERROR in the rendered output of $dir" >&2; exit 1; }
    echo "$dir: renders, $(grep -c '^kind:' "$out") resources ok"
  done
fi
echo "k8s manifests: ok"
