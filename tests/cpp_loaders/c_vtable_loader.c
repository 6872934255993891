/*
 * An OVMS loader written in C, with the vtable laid out by hand as the Itanium C++ ABI lays out
 * ovms::CustomLoaderInterface (two destructor slots, then the six methods in declaration order).
 * It is compiled without the project's C++ header, so running it through the shim checks that
 * the header's method order is the layout loaders are compiled against. Each method appends what
 * it received to calls(); std::string arguments are read through libstdc++'s layout
 * (data pointer, then length).
 */
#include <stdio.h>
#include <string.h>

typedef struct {
    const char* data;
    size_t size;
} StdString;

typedef struct Loader {
    void* const* vtable;
} Loader;

static char log_text[4096];

static void record(const char* what, const StdString* text, int number) {
    char line[512];
    if (text != NULL)
        snprintf(line, sizeof line, "%s(%.*s,%d);", what, (int)text->size, text->data, number);
    else
        snprintf(line, sizeof line, "%s(%d);", what, number);
    strncat(log_text, line, sizeof log_text - strlen(log_text) - 1);
}

/* Status values: loaderInit 0 (OK), loadModel 4 (MODEL_LOAD_ERROR), getModelBlacklistStatus 5
   (MODEL_BLACKLISTED), unloadModel 0, retireModel 6 (INTERNAL_ERROR), loaderDeInit 0. */
static void complete_destructor(Loader* self) { record("~complete", NULL, 0); }
static void deleting_destructor(Loader* self) { record("~deleting", NULL, 0); }
static int loader_init(Loader* self, const StdString* file) { record("loaderInit", file, 0); return 0; }
static int load_model(Loader* self, const StdString* name, const StdString* base, int version, const StdString* options,
                      void* model, void* weights) {
    record("loadModel", name, version);
    record("base", base, 0);
    record("options", options, 0);
    return 4;
}
static int blacklist(Loader* self, const StdString* name, int version) { record("blacklist", name, version); return 5; }
static int unload_model(Loader* self, const StdString* name, int version) { record("unloadModel", name, version); return 0; }
static int retire_model(Loader* self, const StdString* name) { record("retireModel", name, 0); return 6; }
static int loader_deinit(Loader* self) { record("loaderDeInit", NULL, 0); return 0; }

static void* const vtable[] = {
    (void*)complete_destructor, (void*)deleting_destructor, (void*)loader_init, (void*)load_model,
    (void*)blacklist,           (void*)unload_model,        (void*)retire_model, (void*)loader_deinit,
};
static Loader the_loader = {vtable};

Loader* createCustomLoader(void) { return &the_loader; }
const char* calls(void) { return log_text; }
