#!/usr/bin/env bash
# Prints the man page flatipfsd.toml(5), converted from docs/config.md (the
# one reference of the configuration file), for scripts/package.sh:
#   scripts/config-man.sh VERSION > flatipfsd.toml.5
# Handles what that page uses: ## headings, paragraphs, key tables
# (| key | type | default | reload | meaning |), ``` blocks, `code`, **bold**.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=${1:?usage: config-man.sh VERSION}
awk -v version="$version" '
function inline(s) {
  gsub(/\\\|/, "\001", s)          # an escaped pipe inside a table cell
  gsub(/\\/, "\\e", s)
  gsub(/\001/, "|", s)
  while (match(s, /`[^`]*`/)) s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 1, RLENGTH - 2) "\\fR" substr(s, RSTART + RLENGTH)
  while (match(s, /\*\*[^*]*\*\*/)) s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 2, RLENGTH - 4) "\\fR" substr(s, RSTART + RLENGTH)
  gsub(/-/, "\\-", s)
  return s
}
function line(s) { if (s ~ /^[.\047]/) s = "\\&" s; print s }
BEGIN {
  print ".TH FLATIPFSD.TOML 5 \"\" \"flatipfs " version "\" \"flatipfs manual\""
  print ".SH NAME"
  print "flatipfsd.toml \\- configuration file of flatipfsd"
  print ".SH DESCRIPTION"
}
NR == 1 { next }
/^```/ { if (code) { print ".fi"; print ".RE"; code = 0 } else { print ".PP"; print ".RS"; print ".nf"; code = 1 }; next }
code { s = $0; gsub(/\\/, "\\e", s); line(s); next }
/^## / { h = substr($0, 4); gsub(/`/, "", h); print ".SH \"" toupper(h) "\""; next }
/^\| *key *\|/ || /^\| *---/ { next }
/^\|/ {
  row = $0; gsub(/\\\|/, "\002", row)
  n = split(row, c, "|")
  for (i = 2; i < n; i++) { gsub(/\002/, "\\|", c[i]); gsub(/^ +| +$/, "", c[i]) }
  print ".TP"
  line(inline(c[2]) " (" inline(c[3]) "; default: " inline(c[4]) "; reload: " inline(c[5]) ")")
  line(inline(c[6]))
  next
}
/^$/ { print ".PP"; next }
{ line(inline($0)) }
END {
  print ".SH SEE ALSO"
  print "flatipfsd(8), flatipfsctl(1); /usr/share/doc/flatipfs/config.md"
}
' "$here/docs/config.md"
