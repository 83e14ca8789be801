.PHONY: demo
demo: ## Bring up a local cluster with the mesh, viz and the demo app, and print `mesh viz stat`.
	bash hack/demo.sh
