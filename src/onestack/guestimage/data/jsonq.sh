#!/bin/sh
# jsonq PATTERN [FILE...] - print the leaf values of a JSON document whose path matches PATTERN.
#
#   jsonq '^public_keys[.]' meta_data.json
#
# PATTERN is an awk ERE. Paths join object keys and array indexes with ".", e.g. "hostname",
# "public_keys.mykey", "keys.0.data". Strings are unescaped (\n \t \" \\ \/ \uXXXX); each
# printed value ends with a newline; null is never printed. Plain busybox awk, no extensions.

[ $# -ge 1 ] || { echo "usage: jsonq PATTERN [FILE...]" >&2; exit 2; }
pat=$1
shift
exec awk -v pat="$pat" '
function skip_ws() {
    while (pos <= n && index(" \t\r\n", substr(s, pos, 1)) > 0)
        pos++
}

function hex_value(h,    i, d, v) {
    v = 0
    for (i = 1; i <= length(h); i++) {
        d = index("0123456789abcdef", tolower(substr(h, i, 1))) - 1
        if (d < 0)
            return 63   # "?"
        v = v * 16 + d
    }
    return v
}

function utf8(cp) {
    if (cp < 1)
        return ""
    if (cp < 128)
        return sprintf("%c", cp)
    if (cp < 2048)
        return sprintf("%c%c", 192 + int(cp / 64), 128 + cp % 64)
    return sprintf("%c%c%c", 224 + int(cp / 4096), 128 + int(cp / 64) % 64, 128 + cp % 64)
}

# Parse a string starting at the opening quote; return its unescaped value.
function parse_string(    out, rest, c) {
    pos++
    out = ""
    while (pos <= n) {
        rest = substr(s, pos)
        if (!match(rest, /["\\]/)) {
            out = out rest
            pos = n + 1
            break
        }
        out = out substr(rest, 1, RSTART - 1)
        pos += RSTART - 1
        if (substr(s, pos, 1) == "\"") {
            pos++
            return out
        }
        c = substr(s, pos + 1, 1)
        pos += 2
        if (c == "n") out = out "\n"
        else if (c == "t") out = out "\t"
        else if (c == "r") out = out "\r"
        else if (c == "b") out = out "\b"
        else if (c == "f") out = out "\f"
        else if (c == "u") {
            out = out utf8(hex_value(substr(s, pos, 4)))
            pos += 4
        }
        else out = out c
    }
    return out
}

function emit(path, v) {
    if (path ~ pat) {
        printf "%s", v
        if (v !~ /\n$/)
            printf "\n"
    }
}

# Step over the opening bracket at pos; whether the container is empty (then its closing
# bracket, closer, is stepped over too).
function open_empty(closer) {
    pos++
    skip_ws()
    if (substr(s, pos, 1) == closer) {
        pos++
        return 1
    }
    return 0
}

# Step over what follows a member of an object or array; whether it was a comma (so another
# member follows).
function more_members(    c) {
    skip_ws()
    c = substr(s, pos, 1)
    pos++
    return c == ","
}

# The path of member k (a key or an index) of the value at path.
function child_path(path, k) {
    return (path == "") ? k : (path "." k)
}

function parse_value(path,    c, key, idx, lit) {
    skip_ws()
    c = substr(s, pos, 1)
    if (c == "{") {
        if (open_empty("}"))
            return
        while (pos <= n) {
            skip_ws()
            if (substr(s, pos, 1) != "\"") {
                pos = n + 1
                return
            }
            key = parse_string()
            skip_ws()
            if (substr(s, pos, 1) == ":")
                pos++
            parse_value(child_path(path, key))
            if (!more_members())
                return
        }
    } else if (c == "[") {
        if (open_empty("]"))
            return
        idx = 0
        while (pos <= n) {
            parse_value(child_path(path, idx))
            idx++
            if (!more_members())
                return
        }
    } else if (c == "\"") {
        emit(path, parse_string())
    } else if (pos <= n) {
        if (match(substr(s, pos), /^[^],} \t\r\n]+/)) {
            lit = substr(s, pos, RLENGTH)
            pos += RLENGTH
            if (lit != "null")
                emit(path, lit)
        } else {
            pos = n + 1
        }
    }
}

{ doc = doc $0 "\n" }

END {
    s = doc
    n = length(s)
    pos = 1
    parse_value("")
}
' "$@"
