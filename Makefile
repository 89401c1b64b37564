# Holdfast: the two set-up commands are `make demo` and `make test`.
.PHONY: demo test bench vectors build

build:
	go build -o bin/holdfast ./cmd/holdfast

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash bench/run.sh

vectors:
	go run ./internal/vectors/cmd/genvectors
