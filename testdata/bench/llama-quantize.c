// llama-quantize.c calls llama.cpp's own llama_model_quantize with its
// default parameters, setting only the file type and the thread count:
//
//	lq IN OUT FTYPE NTHREAD
//
// FTYPE is llama_ftype: 7 q8_0, 2 q4_0, 15 q4_k_m, 17 q5_k_m, 18 q6_k.
// Build it against the libllama of @node-llama-cpp/linux-x64 (see
// quantize-vs-llama.sh). Only the two leading fields of
// llama_model_quantize_params are named; the rest is room for the others.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct params { int32_t nthread; int32_t ftype; char rest[1024]; };
struct params llama_model_quantize_default_params(void);
uint32_t llama_model_quantize(const char *in, const char *out, const struct params *p);
void llama_backend_init(void);

int main(int argc, char **argv) {
	if (argc != 5) { fprintf(stderr, "usage: lq IN OUT FTYPE NTHREAD\n"); return 2; }
	llama_backend_init();
	struct params p = llama_model_quantize_default_params();
	p.ftype = atoi(argv[3]);
	p.nthread = atoi(argv[4]);
	return llama_model_quantize(argv[1], argv[2], &p) != 0;
}
