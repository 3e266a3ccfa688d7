// Command gantry releases AI models into GPU clusters the GitOps way.
//
//	gantry plan [PATH|GIT-URL]   preview what would change
//	gantry validate [PATH]       check the specs
//	gantry fmt [PATH]            format the specs canonically
//	gantry version               print the version
//
// Exit codes follow Terraform: 0 success, 1 error; plan -detailed-exitcode
// adds 2 for "changes present"; fmt -check gives 3 when files need
// formatting.
package main
