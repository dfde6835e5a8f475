#!/usr/bin/env bash
# Placeholder until the CentOS 7 host setup lands (work in progress in this session).
set -euo pipefail
