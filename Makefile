# The operator's workflow, from a fresh clone: `make test`, `make run`, `make stop`.
# `make run` starts the proxy in the background with the environment it is given
# (REDIS_URL, PROXY_PORT_HTTP, ... or a .env file), records its PID in .run/,
# and returns once it listens; `make stop` ends that process, and only that one.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

RUN_DIR := .run
PID_FILE := $(RUN_DIR)/proxy.pid
LOG_FILE := $(RUN_DIR)/proxy.log
# Interfaces to start (arguments to dist/main.js); empty starts every one.
INTERFACES ?=
# Seconds `make run` waits for the proxy to listen.
START_TIMEOUT ?= 30
# Seconds `make stop` waits before SIGKILL; above SHUTDOWN_TIMEOUT (10 s by default).
STOP_TIMEOUT ?= 20

# The PID file is trusted only while it names a live proxy: a PID can be reused.
define ALIVE
alive() { kill -0 "$$1" 2>/dev/null && [ "$$(ps -o stat= -p "$$1" | cut -c1)" != Z ] && ps -o args= -p "$$1" | grep -q 'dist/main.js'; }
endef

.PHONY: help install build test run stop

help:
	@echo 'make test   typecheck, lint, build and every test suite (needs redis-server on PATH)'
	@echo 'make run    start the proxy in the background; PID in $(PID_FILE), logs in $(LOG_FILE)'
	@echo 'make stop   SIGTERM the proxy started by make run and wait for it to exit'

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund --prefer-offline

install: node_modules/.package-lock.json

build: install
	npm run build --silent

test: install
	npm test

run: build
	@$(ALIVE)
	mkdir -p $(RUN_DIR)
	if [ -f $(PID_FILE) ] && alive "$$(cat $(PID_FILE))"; then
	  echo "redis-proxy is already running (pid $$(cat $(PID_FILE)))" >&2
	  exit 1
	fi
	touch $(LOG_FILE)
	from=$$(( $$(wc -c < $(LOG_FILE)) + 1 ))
	nohup node dist/main.js $(INTERFACES) >>$(LOG_FILE) 2>&1 </dev/null &
	pid=$$!
	echo "$$pid" > $(PID_FILE)
	for _ in $$(seq 1 $$(( $(START_TIMEOUT) * 10 ))); do
	  if ! alive "$$pid"; then
	    echo "redis-proxy exited during start-up:" >&2
	    tail -c +"$$from" $(LOG_FILE) | tail -n 20 >&2
	    rm -f $(PID_FILE)
	    exit 1
	  fi
	  if tail -c +"$$from" $(LOG_FILE) | grep -q '"msg":"serving"'; then
	    echo "redis-proxy running (pid $$pid, logs in $(LOG_FILE))"
	    exit 0
	  fi
	  sleep 0.1
	done
	echo "redis-proxy did not listen within $(START_TIMEOUT) s; stopping it" >&2
	kill -TERM "$$pid" 2>/dev/null || true
	rm -f $(PID_FILE)
	exit 1

stop:
	@$(ALIVE)
	if [ ! -f $(PID_FILE) ]; then echo "redis-proxy is not running"; exit 0; fi
	pid=$$(cat $(PID_FILE))
	if ! alive "$$pid"; then
	  echo "redis-proxy is not running (stale $(PID_FILE) removed)"
	  rm -f $(PID_FILE)
	  exit 0
	fi
	kill -TERM "$$pid"
	for _ in $$(seq 1 $$(( $(STOP_TIMEOUT) * 10 ))); do
	  alive "$$pid" || break
	  sleep 0.1
	done
	if alive "$$pid"; then
	  echo "redis-proxy did not stop within $(STOP_TIMEOUT) s; sending SIGKILL" >&2
	  kill -KILL "$$pid"
	fi
	rm -f $(PID_FILE)
	echo "redis-proxy stopped (pid $$pid)"
