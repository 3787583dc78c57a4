#!/usr/bin/env bash
# Builds the project's agent image locally (hack/image.sh, owned by the
# agent's authors) and records its tag for `kind load` and the e2e overlay.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/../../hack/kind-node-image/lib.sh"
[[ -f $REPO_ROOT/hack/image.sh ]] || die "hack/image.sh (the agent image build) is missing"
log "building the agent image with hack/image.sh"
out=$(cd "$REPO_ROOT" && bash hack/image.sh | tee "$E2E_LOGS/agent-image.log")
img=$(printf '%s\n' "$out" | grep -E '^[a-z0-9./_-]+(:[A-Za-z0-9._-]+)$' | tail -1 || true)
[[ -n $img ]] && docker image inspect "$img" >/dev/null 2>&1 || die "could not tell which image hack/image.sh built (output: $out)"
# a tag per image content, so a rebuilt agent rolls out (":latest" would not)
id=$(docker image inspect -f '{{.Id}}' "$img"); id=${id#sha256:}
tag=authbridge-e2e/agent:${id:0:12}
docker tag "$img" "$tag"
echo "$tag" > "$E2E_AGENT_IMAGE_FILE"
echo "$tag"
