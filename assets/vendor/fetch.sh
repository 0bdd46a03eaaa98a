#!/usr/bin/env bash
# Re-create assets/vendor/ from npm: the JavaScript the built book needs to work offline
# (MathJax for equations, require.js + the Jupyter widget manager for embedded ipywidgets).
# Needs node's `npm` and access to the npm registry; no build step, the packages ship dist files.
# Usage: bash assets/vendor/fetch.sh
set -euo pipefail

MATHJAX=mathjax@3.2.2
REQUIREJS=requirejs@2.3.8
HTML_MANAGER=@jupyter-widgets/html-manager@1.0.15

vendor="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$MATHJAX" "$REQUIREJS" "$HTML_MANAGER" >/dev/null)
for tarball in "$work"/*.tgz; do
    name="$(basename "$tarball" .tgz)"
    mkdir -p "$work/$name"
    tar -xzf "$tarball" -C "$work/$name"
done
mathjax="$work/mathjax-3.2.2/package"
requirejs="$work/requirejs-2.3.8/package"
manager="$work/jupyter-widgets-html-manager-1.0.15/package"

rm -rf "$vendor/mathjax" "$vendor/html-manager" "$vendor/require.js"

# MathJax: the combined TeX/MathML -> CommonHTML bundle, the woff2 fonts it loads from
# [mathjax]/output/chtml/fonts/woff-v2, and the TeX extensions that `autoload` fetches on first
# use of a macro such as \boldsymbol, \color or \cancel (all-packages.js is never loaded: skipped).
mkdir -p "$vendor/mathjax/output/chtml/fonts" "$vendor/mathjax/input/tex"
cp "$mathjax/es5/tex-mml-chtml.js" "$mathjax/LICENSE" "$vendor/mathjax/"
cp -r "$mathjax/es5/output/chtml/fonts/woff-v2" "$vendor/mathjax/output/chtml/fonts/"
cp -r "$mathjax/es5/input/tex/extensions" "$vendor/mathjax/input/tex/"
rm "$vendor/mathjax/input/tex/extensions/all-packages.js"

# require.js: the AMD loader the widget manager needs.
cp "$requirejs/require.js" "$vendor/require.js"

# Widget manager: embed-amd.js bundles base, controls and output widgets and renders the widget
# state myst-nb embeds in each page. Its CSS pulls Font Awesome from the same folder; browsers take
# the woff2 variant, so the eot/ttf/svg/woff copies (2.6 MB) and the source maps are left out.
mkdir -p "$vendor/html-manager"
cp "$manager/dist/embed-amd.js" "$manager/dist/embed.js.LICENSE.txt" "$vendor/html-manager/"
cp "$manager/dist/"*.woff2 "$vendor/html-manager/"

du -sh "$vendor"
