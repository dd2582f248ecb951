#!/usr/bin/env bash
# Set up, then the main job: fetch ml-latest-small, train and evaluate the ials ranking model
# (NDCG@10 and friends on a per-user 80/20 split), recommend to a known user and to a brand-new one
# with the movies behind each pick, and list movies similar to one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mr=".venv/bin/movierec --threads 1"
$mr data fetch ml-latest-small
$mr train ml-latest-small --model ials --split user-ratio:0.8:42 --out runs/ml-latest-small-ials
$mr recommend --model-dir runs/ml-latest-small-ials --user 1 -k 10
# A new user who loves Toy Story, The Matrix and Star Wars (movie ids of ml-latest-small):
$mr recommend --model-dir runs/ml-latest-small-ials --rate 1=5 --rate 2571=5 --rate 260=4.5 -k 10
$mr similar --model-dir runs/ml-latest-small-ials --movie "Matrix, The" -k 5
