#!/usr/bin/env bash
# Creates the stack's Kafka topics on Redpanda (runs once in the `topics` service).
# Partitions follow infra/topics.json: the payment events are keyed by account, so four
# partitions let four accounts progress in parallel; the dead-letter topic needs only one.
set -euo pipefail

create() {
    local topic=$1 partitions=$2
    if rpk topic describe "$topic" >/dev/null 2>&1; then
        echo "topic $topic exists"
    else
        rpk topic create "$topic" --partitions "$partitions" --replicas 1
    fi
}

create "${PAYMENT_EVENTS_TOPIC:-payment-events}" 4
create "${DEAD_LETTER_TOPIC:-payment-events-dlq}" 1
