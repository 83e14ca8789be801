// Package docs holds the project's Markdown documentation. Its only Go code
// is a test that checks the repository paths and links the pages name.
package docs
