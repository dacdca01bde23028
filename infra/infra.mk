# Infra targets of kms-replica-guard, included by the top-level Makefile (`include infra/infra.mk`).
# make runs in the repository root; every path here is relative to it.
#
#   make infra-setup   install .venv-infra (SAM CLI, cfn-lint, checkov) and infra/cdk/node_modules
#   make infra-test    every offline check of infra/ (lint, validate, checkov, CDK tests, synth,
#                      rule pattern and the stacks' alarms on the emulator); no AWS credentials needed
#   make demo-alarms   the SAM stack's AutoFixApplied spike alarm firing end to end on the local
#                      emulator (the function under cargo lambda watch), as an operator sees it
#   make synth         cdk synth of the hub + spoke (+ member, guardrails) stacks, offline, without building the Rust code
#   make deploy        cargo lambda build + cargo lambda deploy (the function only; ROLE_ARN=...)
#   make deploy-sam    sam build + sam deploy (--guided the first time) of infra/sam/template.yaml
#   make deploy-sam-spokes  spoke.yaml in every SPOKE_REGIONS Region (HUB_REGION=...)
#   make deploy-cdk    cdk deploy --all (hub in HUB_REGION + a spoke per SPOKE_REGIONS Region)
# Deploy targets need real AWS credentials and are never run by tests.

VENV_PY ?= .venv/bin/python
INFRA_VENV_BIN = .venv-infra/bin
# cargo-lambda (and the zig it brings) lives in the project venv: keep it first on PATH.
INFRA_PATH = $(abspath $(dir $(VENV_PY))):$(abspath $(INFRA_VENV_BIN)):$(PATH)
LAMBDA_DIR = $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)/lambda

FUNCTION_NAME ?= kms-replica-guard
ROLE_ARN ?=
HUB_REGION ?= $(or $(AWS_REGION),$(AWS_DEFAULT_REGION))
SPOKE_REGIONS ?=
LOG_LEVEL ?= INFO
# `make deploy` only: the log group of the function (default /aws/lambda/$(FUNCTION_NAME)). A
# stack's RemediatorRole may only write to its stack's group, /kms-replica-guard/<stack>.
LOG_GROUP ?=
INFRA_COMMA := ,
# Extra `-c key=value` settings for the CDK app (see infra/cdk/lib/config.ts), e.g.
#   CDK_CONTEXT='-c remediationMode=enforce -c alarmEmail=ops@example.com'
CDK_CONTEXT ?=
CDK_SYNTH_CONTEXT ?= -c account=111122223333 -c hubRegion=us-east-1 -c spokeRegions=us-west-2,eu-west-1 -c memberStack=true -c guardrails=true -c bundle=false -c remediationMode=enforce -c securityHub=on -c configRule=account

export SAM_CLI_TELEMETRY := 0

.PHONY: infra-setup infra-test demo-alarms synth deploy deploy-sam deploy-sam-spokes deploy-cdk

infra-setup: ## install .venv-infra (SAM CLI, cfn-lint, checkov) and infra/cdk/node_modules; idempotent
	@echo "==> infra tooling: .venv-infra from requirements/infra.txt, npm ci in infra/cdk (skipped when up to date)"
	@infra/scripts/setup.sh

infra-test: ## offline infra checks: synth, cfn-lint, sam validate, checkov, CDK tests, rule pattern and the alarms firing on the emulator
	@echo "==> infra-test: cdk synth, SAM->CloudFormation, cfn-lint, sam validate (+ --lint), checkov, CDK jest, template checks, contract, guardrails, rule pattern on the emulator, alarms driven by the function on the emulator"
	@VENV_PY=$(VENV_PY) CDK_SYNTH_CONTEXT="$(CDK_SYNTH_CONTEXT)" infra/scripts/infra-test.sh

demo-alarms: setup infra-setup ## the spike alarm of the SAM stack firing end to end on the local emulator (about 2 min)
	@echo "==> SAM -> CloudFormation (infra/.build/sam), emulator, the alarm from the template, the function under cargo lambda watch"
	@$(INFRA_VENV_BIN)/python infra/scripts/sam_to_cfn.py infra/.build/sam infra/sam/*.yaml >/dev/null
	@cargo xtask emulator start
	@$(VENV_PY) infra/tests/alarm_harness.py demo

synth: infra-setup ## cdk synth of the hub + spoke stacks, offline, without building the Rust code
	@echo "==> cdk synth (offline, no Rust build): $(CDK_SYNTH_CONTEXT) $(CDK_CONTEXT) -> infra/cdk/cdk.out"
	cd infra/cdk && npx --no-install cdk synth --no-notices -q $(CDK_SYNTH_CONTEXT) $(CDK_CONTEXT)

deploy: ## cargo lambda build + deploy of the function alone (ROLE_ARN=...; needs AWS credentials)
	@test -n "$(ROLE_ARN)" || { echo "error: set ROLE_ARN=arn:aws:iam::ACCOUNT:role/NAME, the execution role (the RemediatorRoleArn output of the SAM/CDK stack, or a role with the RemediatorRole policy of infra/sam/template.yaml; see docs/src/deployment.md)" >&2; exit 1; }
	@echo "==> cargo lambda build --release --arm64 (-> $(LAMBDA_DIR)/bootstrap)"
	@PATH="$(INFRA_PATH)" cargo lambda build --release --arm64
	@echo "==> cargo lambda deploy $(FUNCTION_NAME): settings from [package.metadata.lambda.deploy] in Cargo.toml, role $(ROLE_ARN)"
	@PATH="$(INFRA_PATH)" cargo lambda deploy --admerge --lambda-dir $(LAMBDA_DIR) --binary-name bootstrap \
	  --iam-role $(ROLE_ARN) --env-var REMEDIATOR_ROLE_ARN=$(ROLE_ARN) \
	  $(if $(SWEEP_REGIONS),--env-var SWEEP_REGIONS=$(SWEEP_REGIONS)) $(FUNCTION_NAME)
	@echo "==> aws lambda update-function-configuration $(FUNCTION_NAME): JSON log format, application log level $(LOG_LEVEL)$(if $(LOG_GROUP), to $(LOG_GROUP))"
	@PATH="$(INFRA_PATH)" aws lambda wait function-active-v2 --function-name $(FUNCTION_NAME)
	@PATH="$(INFRA_PATH)" aws lambda wait function-updated-v2 --function-name $(FUNCTION_NAME)
	@PATH="$(INFRA_PATH)" aws lambda update-function-configuration --function-name $(FUNCTION_NAME) \
	  --logging-config LogFormat=JSON,ApplicationLogLevel=$(LOG_LEVEL),SystemLogLevel=INFO$(if $(LOG_GROUP),$(INFRA_COMMA)LogGroup=$(LOG_GROUP)) \
	  --output text --query LastUpdateStatus

deploy-sam: infra-setup ## sam build + sam deploy (--guided the first time) of the hub stack
	@echo "==> sam build --beta-features infra/sam/template.yaml (cargo lambda, arm64) -> infra/sam/.aws-sam"
	@# BuildMethod rust-cargolambda is a SAM CLI beta feature: without the opt-in, sam build
	@# stops at an interactive prompt.
	@cd infra/sam && PATH="$(INFRA_PATH)" sam build --beta-features --template-file template.yaml
	@if [ -f infra/sam/samconfig.toml ]; then \
	  echo "==> sam deploy with infra/sam/samconfig.toml"; \
	  cd infra/sam && PATH="$(INFRA_PATH)" sam deploy; \
	else \
	  echo "==> sam deploy --guided (no infra/sam/samconfig.toml yet; answers are saved there)"; \
	  cd infra/sam && PATH="$(INFRA_PATH)" sam deploy --guided --capabilities CAPABILITY_IAM; \
	fi

deploy-sam-spokes: infra-setup ## spoke.yaml in each SPOKE_REGIONS Region, forwarding to HUB_REGION
	@test -n "$(HUB_REGION)" -a -n "$(SPOKE_REGIONS)" || { echo "error: set HUB_REGION=<hub Region> SPOKE_REGIONS=<Region>,<Region>" >&2; exit 1; }
	@for r in $$(echo "$(SPOKE_REGIONS)" | tr ',' ' '); do \
	  echo "==> aws cloudformation deploy infra/sam/spoke.yaml as kms-replica-guard-spoke in $$r (HubRegion=$(HUB_REGION))"; \
	  PATH="$(INFRA_PATH)" aws cloudformation deploy --region $$r --stack-name kms-replica-guard-spoke \
	    --template-file infra/sam/spoke.yaml --parameter-overrides HubRegion=$(HUB_REGION) \
	    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset || exit 1; \
	done

deploy-cdk: infra-setup ## cdk deploy --all: hub in HUB_REGION, a spoke per SPOKE_REGIONS Region
	@test -n "$(HUB_REGION)" || { echo "error: set HUB_REGION (or AWS_REGION)" >&2; exit 1; }
	@echo "==> cdk deploy --all: hub in $(HUB_REGION), spokes in '$(SPOKE_REGIONS)' (builds the function with cargo lambda) $(CDK_CONTEXT)"
	@cd infra/cdk && PATH="$(INFRA_PATH)" npx --no-install cdk deploy --all --no-notices \
	  -c hubRegion=$(HUB_REGION) $(if $(SPOKE_REGIONS),-c spokeRegions=$(SPOKE_REGIONS)) $(CDK_CONTEXT)
