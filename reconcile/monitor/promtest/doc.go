// Package promtest starts Debian's prometheus for tests: on a free
// loopback port, scraping one target every 200 ms, with its data in a
// directory so that it can be stopped and started again with what it
// scraped.
package promtest
