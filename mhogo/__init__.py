"""mhogo's front door: the `mhogo` command (`mhogo.cli`), the stack it runs on one machine (`mhogo.stack`), the
retraining scenario (`mhogo.scenario`) and the browser that looks at the dashboard (`mhogo.browser`). The only
package that imports both edges, `producers` and `workers`."""
