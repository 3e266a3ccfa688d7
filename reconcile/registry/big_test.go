package registry

// rssChildEnv, when set, makes the test binary a child that pushes one big
// file and reports its peak RSS (see TestBigPushRSS).
const rssChildEnv = "GANTRY_REGISTRY_RSS_CHILD"

func rssChild() int { return 0 }
