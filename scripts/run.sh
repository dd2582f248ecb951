#!/usr/bin/env bash
# Set up, then the main job: fetch ml-latest-small, train and evaluate the bias model,
# recommend to a known user and to a brand-new one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mr=.venv/bin/movierec
$mr data fetch ml-latest-small
$mr train ml-latest-small --model bias --split random:0.9:42 --out runs/ml-latest-small-bias
$mr recommend --model-dir runs/ml-latest-small-bias --user 1 -k 10
# A new user who loves Toy Story, The Matrix and Star Wars (movie ids of ml-latest-small):
$mr recommend --model-dir runs/ml-latest-small-bias --rate 1=5 --rate 2571=5 --rate 260=4.5 -k 10
