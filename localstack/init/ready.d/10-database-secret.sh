#!/usr/bin/env bash
# LocalStack ready hook: the database secret, as AWS has it (the stack reads the `url` key),
# so the LocalStack deploy exercises the same DatabaseSecretArn path as AWS. The tables are
# not made here: the stack declares them, and CloudFormation refuses a table that exists.
set -euo pipefail

name=consim/database
url="postgresql://consim:consim@postgres:5432/consim"
if awslocal secretsmanager describe-secret --secret-id "$name" >/dev/null 2>&1; then
    echo "secret $name exists"
else
    awslocal secretsmanager create-secret --name "$name" \
        --secret-string "{\"url\": \"$url\"}" >/dev/null
    echo "secret $name created"
fi
