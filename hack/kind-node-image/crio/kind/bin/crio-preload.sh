#!/bin/bash
# crio-preload.service: docker-archive -> containers-storage for each image
# listed in /kind/crio-images/images.list (skipped when already stored).
set -euo pipefail
tar=/kind/crio-images/images.tar
while read -r img; do
  [[ -n $img ]] || continue
  if skopeo inspect --raw "containers-storage:$img" >/dev/null 2>&1; then continue; fi
  echo "crio-preload: $img"
  skopeo copy --quiet "docker-archive:$tar:$img" "containers-storage:$img"
done < /kind/crio-images/images.list
