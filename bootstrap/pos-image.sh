# shellcheck shell=bash
# pos.sh's image actions: commit (the POS container snapshotted into an image), images (those
# labelled poscloud.app and the containers using them), image-delete (unless in use). Sent
# between lib.sh and pos.sh (src/remote/mod.rs); they use pos.sh's container and image_re.
# shellcheck disable=SC2154 # those are set by pos.sh

# Image id → names of the containers (running or not) made from it, one "id name" a line.
# Ids, not names: engines normalise names (docker.io/…, localhost/…).
image_users() {
  local ids
  ids=$(docker ps -aq --no-trunc)
  [[ -n $ids ]] || return 0
  # shellcheck disable=SC2086 # one id a word
  docker inspect -f '{{.Image}} {{.Name}}' $ids | sed 's| /| |'
}
users_of() { image_users | awk -v id="$1" '$1 == id { print $2 }' | sort | paste -sd' ' -; }

# ACTION=commit: SHOP, TAG.
pos_commit() {
  [[ ${SHOP:-} =~ ^[0-9]{8}$ ]] || bad "SHOP must be 8 digits"
  [[ ${TAG:-} =~ ^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$ ]] ||
    bad "TAG must be an image reference (name[:tag])"
  docker inspect "$container" >/dev/null 2>&1 || fail "no container $container on this host"
  labels=$(docker inspect -f '{{index .Config.Labels "poscloud.shop"}}|{{index .Config.Labels "poscloud.app"}}' "$container")
  IFS='|' read -r have_shop app <<<"$labels"
  [[ $have_shop == "$SHOP" ]] || bad "container $container belongs to shop ${have_shop:-unknown}, not $SHOP"
  [[ $app =~ ^[a-z][a-z0-9-]{0,30}$ ]] || fail "container $container has no poscloud.app label"
  when=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  docker commit -c "LABEL poscloud.shop=$SHOP" -c "LABEL poscloud.app=$app" \
    -c "LABEL poscloud.snapshot=$when" "$container" "$TAG" >/dev/null ||
    fail "docker commit of $container failed"
  id=$(docker image inspect -f '{{.Id}}' "$TAG")
  echo "pos: $container committed to $TAG ($id), snapshot $when"
  printf 'POSCLOUD_RESULT {"image":%s,"image_id":%s}\n' "$(json "$TAG")" "$(json "$id")"
  exit 0
}

# ACTION=images.
pos_images() {
  users=$(image_users) || fail "cannot list the containers"
  list="" table=""
  while IFS= read -r id; do
    [[ -n $id ]] || continue
    info=$(docker image inspect -f '{{with index .Config.Labels "poscloud.app"}}{{.}}{{end}}|{{with index .Config.Labels "poscloud.media.key"}}{{.}}{{end}}|{{with index .Config.Labels "poscloud.snapshot"}}{{.}}{{end}}|{{range .RepoTags}}{{.}} {{end}}' "$id")
    IFS='|' read -r app key snap tags <<<"$info"
    used=$(awk -v id="$id" '$1 == id { print $2 }' <<<"$users" | sort | paste -sd' ' -)
    tags=${tags% }
    tj="" uj=""
    for t in $tags; do tj+=${tj:+,}$(json "$t"); done
    for u in $used; do uj+=${uj:+,}$(json "$u"); done
    list+=${list:+,}$(printf '{"id":%s,"tags":[%s],"app":%s,"key":%s,"snapshot":%s,"used_by":[%s]}' \
      "$(json "$id")" "$tj" "$(json "$app")" "$(json "$key")" "$(json "$snap")" "$uj")
    short=${id#sha256:}
    table+=$(printf '%-12s  %-5s  %-16s  %-20s  %-30s  %s' "${short:0:12}" "$app" "${key:--}" \
      "${snap:--}" "${tags// /,}" "${used:--}")$'\n'
  done < <(docker images -q --no-trunc --filter label=poscloud.app | sort -u)
  printf '%-12s  %-5s  %-16s  %-20s  %-30s  %s\n' ID APP KEY SNAPSHOT TAGS USED_BY
  printf '%s' "$table"
  echo "POSCLOUD_RESULT {\"images\":[$list]}"
  exit 0
}

# ACTION=image-delete: IMAGE; exit 4 when a container uses it.
pos_image_delete() {
  [[ ${IMAGE:-} =~ $image_re ]] || bad "IMAGE must be an image reference or id"
  id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null) || fail "no image $IMAGE on this host"
  used=$(users_of "$id") || fail "cannot list the containers"
  if [[ -n $used ]]; then
    echo "pos: image $IMAGE is used by container(s) $used (running or stopped): not deleted" >&2
    exit 4
  fi
  # Never -f: an image that is somehow still needed stays.
  docker image rm "$IMAGE" >/dev/null || fail "docker image rm $IMAGE failed"
  echo "pos: image $IMAGE ($id) deleted"
  printf 'POSCLOUD_RESULT {"deleted":%s,"image_id":%s}\n' "$(json "$IMAGE")" "$(json "$id")"
  exit 0
}
