#!/bin/sh
# Checks that the example overlay made it into the OS.
set -eu
grep -q "nosa example overlay file" /etc/test/test.txt
echo ok
