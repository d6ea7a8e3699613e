#!/usr/bin/env bash
# Installs, from Debian's packages, the programs the tests need and pip cannot provide.
# Java 17 and Maven run the local Kafka broker; kcat is an independent Kafka client for tests;
# prometheus (with promtool) checks and runs the shipped Prometheus config and alerting rules;
# chromium and chromium-driver show the dashboard page in a real headless browser.
set -euo pipefail

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v kcat >/dev/null || missing+=(kcat)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)

if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "driftline tests need: ${missing[*]} (Debian package names); install them and retry." >&2
  exit 1
fi
echo "installing ${missing[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
