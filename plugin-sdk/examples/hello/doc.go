// Command mesh-hello is an example third-party Conduit extension, built with
// the plugin SDK only. It shows every capability a plugin can have:
//
//   - commands: `mesh hello greet [--shout] [NAME]`, `mesh hello echo`
//     (stdin to stdout), `mesh hello exit CODE`, whose usage errors exit 1
//     naming the command and what it takes, as mesh's do (docs/cli.md);
//   - checks: one "hello" category for `mesh check`, and a check flag of
//     its own, `mesh hello check --friend NAME`;
//   - install: `mesh hello install | kubectl apply -f -` renders its Helm
//     chart (embedded, charts/hello): a Deployment running
//     `mesh-hello serve-hooks`, which hands this binary out to the control
//     plane, where it runs as the injector hook's plugin once allowed
//     (`mesh extensions allow hello`);
//   - an injector hook: a pod annotated hello.conduit.dev/greeting=<text>
//     gets the environment variable HELLO_GREETING=<text> in every container
//     but the proxy.
//
// Build it with `go build -o mesh-hello .` and put it in ~/.conduit/plugins.
package main
