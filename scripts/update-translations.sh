#!/usr/bin/env bash
# Extract the web UI's messages, merge them into each language's catalog, compile the catalogs.
# Run after changing text in src/customer_master/web; then translate the new entries in the .po files
# (tests/web/test_i18n.py fails while one is missing) and run it once more to compile.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WEB=src/customer_master/web
LOCALES=$WEB/locales
"$BIN/pybabel" extract -F "$WEB/babel.cfg" -k _ -k N_ -k gettext -k ngettext:1,2 --sort-by-file --add-location=file \
  --project "Customer Master" --copyright-holder "Customer Master" -o "$LOCALES/messages.pot" "$WEB"
for dir in "$LOCALES"/*/; do
  "$BIN/pybabel" update --no-fuzzy-matching --ignore-obsolete -i "$LOCALES/messages.pot" -d "$LOCALES" -l "$(basename "$dir")"
done
"$BIN/pybabel" compile --statistics -d "$LOCALES"
