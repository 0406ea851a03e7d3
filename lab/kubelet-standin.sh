#!/bin/sh
# KUBELET STAND-IN — NOT A KUBELET. Test double installed at /usr/bin/kubelet
# inside berth's node lab, so the run phase and the health agent can start,
# probe, restart and kill "kubelet" without a cluster.
#
# Plain POSIX sh and busybox's nc (the rootfs has busybox-static): a lab node
# has no Node.js, exactly like a real node berth is installed on.
#
# Behaviour:
#   kubelet --version          prints "Kubernetes v1.33.0" (or the first line
#                              of $STATE_DIR/version, so tests can fake upgrades)
#   kubelet [args...]          records argv, --config, --kubeconfig, pid and port in
#                              $STATE_DIR/last-run.json (and appends to runs.jsonl),
#                              serves GET /healthz on port $port, and keeps running
#                              until SIGTERM/SIGINT, then exits 0 like a real kubelet.
#   port                       --healthz-port (kubelet's own flag name) > env
#                              KUBELET_STANDIN_HEALTHZ_PORT > 10248; lab nodes share
#                              the host's network, so parallel nodes need distinct ports.
#                              (busybox nc listens on every address, not only 127.0.0.1.)
#   $STATE_DIR/healthz-mode    read on every request: "ok" (default), "fail" (500),
#                              "hang" (no answer while the mode stays "hang"), for
#                              the agent's fault tests.
#   $STATE_DIR                 env KUBELET_STANDIN_STATE_DIR, default
#                              /var/lib/kubelet-standin.
#
# How it serves: `busybox nc -ll -p PORT -e THIS-SCRIPT` forks one process per
# connection and runs this script again (KUBELET_STANDIN_CONNECTION=1) with
# the connection on stdin/stdout: it reads the request line and headers and
# writes one HTTP/1.1 response (Connection: close).
set -u
STATE_DIR="${KUBELET_STANDIN_STATE_DIR:-/var/lib/kubelet-standin}"
CR="$(printf '\r')"

# The first word of a state file ("" when absent), without forking.
state_word() {
  _w=""
  if [ -r "$STATE_DIR/$1" ]; then IFS=' 	' read -r _w _rest <"$STATE_DIR/$1" || true; fi
  printf '%s' "${_w%"$CR"}"
}

if [ "${KUBELET_STANDIN_CONNECTION:-}" = 1 ]; then
  respond() { # status line, body
    printf 'HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "$1" "${#2}" "$2"
  }
  IFS= read -r request || exit 0
  request="${request%"$CR"}"
  method="${request%% *}"
  target="${request#* }"
  target="${target%% *}"
  target="${target%%\?*}"
  while IFS= read -r header; do
    header="${header%"$CR"}"
    [ -z "$header" ] && break
  done
  if [ "$method" != GET ] || [ "$target" != /healthz ]; then
    respond "404 Not Found" "404 page not found
"
    exit 0
  fi
  case "$(state_word healthz-mode)" in
    hang)
      # Leave the request unanswered (the prober's deadline must fire) until the mode changes.
      while [ "$(state_word healthz-mode)" = hang ]; do sleep 0.2; done
      ;;
    fail) respond "500 Internal Server Error" "[-]standin failed: healthz-mode=fail
" ;;
    *) respond "200 OK" "ok" ;;
  esac
  exit 0
fi

for a in "$@"; do
  case "$a" in
    --version | --version=true)
      v=""
      if [ -r "$STATE_DIR/version" ]; then IFS= read -r v <"$STATE_DIR/version" || true; fi
      printf '%s\n' "${v:-Kubernetes v1.33.0}"
      exit 0
      ;;
  esac
done

# flag NAME ARGS...: the value of --NAME VALUE or --NAME=VALUE; status 1 when absent.
flag() {
  _name="$1"
  shift
  _next=0
  for _a in "$@"; do
    if [ "$_next" = 1 ]; then
      printf '%s' "$_a"
      return 0
    fi
    case "$_a" in
      "--$_name") _next=1 ;;
      "--$_name="*)
        printf '%s' "${_a#--"$_name"=}"
        return 0
        ;;
    esac
  done
  return 1
}
json_string() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
json_flag() { if _v="$(flag "$@")"; then json_string "$_v"; else printf null; fi; }

port="$(flag healthz-port "$@")" || port="${KUBELET_STANDIN_HEALTHZ_PORT:-10248}"
case "$port" in
  "" | *[!0-9]*)
    echo "kubelet-standin: healthz port '$port' is not a number (--healthz-port or KUBELET_STANDIN_HEALTHZ_PORT)" >&2
    exit 1
    ;;
esac

argv="["
sep=""
for a in "$@"; do
  argv="$argv$sep$(json_string "$a")"
  sep=", "
done
argv="$argv]"
record="{\"argv\": $argv, \"config\": $(json_flag config "$@"), \"kubeconfig\": $(json_flag kubeconfig "$@"), \"pid\": $$, \"port\": $port, \"startedAt\": \"$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)\"}"
mkdir -p "$STATE_DIR"
# Atomic replace: a test reading last-run.json never sees half a file.
printf '%s\n' "$record" >"$STATE_DIR/.last-run.json.tmp"
mv -f "$STATE_DIR/.last-run.json.tmp" "$STATE_DIR/last-run.json"
printf '%s\n' "$record" >>"$STATE_DIR/runs.jsonl"

self="$(readlink -f "$0")"
server=""
stop() {
  echo "kubelet-standin: $1, exiting 0"
  # The listener goes with us (the kubelet unit has KillMode=process): the next start needs the port.
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null
  fi
  exit 0
}
trap 'stop SIGTERM' TERM
trap 'stop SIGINT' INT
export KUBELET_STANDIN_STATE_DIR="$STATE_DIR"
KUBELET_STANDIN_CONNECTION=1 busybox nc -ll -p "$port" -e "$self" &
server=$!
echo "kubelet-standin: pid $$ serving /healthz on port $port"
wait "$server"
code=$?
echo "kubelet-standin: cannot serve /healthz on port $port (busybox nc exited $code)" >&2
exit 1
