/*
 * rayvino's C face of an OVMS custom loader library (a C++ object behind a vtable), for cffi.
 *
 * rv_open loads the library as OVMS does (dlopen RTLD_LAZY | RTLD_LOCAL, createCustomLoader) and
 * keeps the object; each other call runs one virtual method. Every call returns a
 * CustomLoaderStatus value (0..6) or a negative RV_* code; on a negative code, `message` holds why
 * (a thrown exception's type and what(), dlerror()'s text). Nothing thrown crosses this boundary.
 * Strings come with their length, so they may hold any byte.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    RV_THREW = -1,           /* the method threw: message has the exception's type and what() */
    RV_OPEN_FAILED = -2,     /* dlopen failed: message has dlerror() */
    RV_SYMBOL_MISSING = -3,  /* no createCustomLoader in the library */
    RV_CREATE_FAILED = -4,   /* createCustomLoader threw or returned NULL */
    RV_CLOSED = -5           /* the object was already deleted */
};

typedef struct RvLoader RvLoader; /* one loader object */
typedef struct RvModel RvModel;   /* the two buffers one loadModel filled */

int rv_open(const char* library_path, RvLoader** loader, char* message, size_t message_size);
int rv_loader_init(RvLoader* loader, const char* config_file, size_t config_file_size, char* message,
                   size_t message_size);
int rv_load_model(RvLoader* loader, const char* name, size_t name_size, const char* base_path,
                  size_t base_path_size, int version, const char* options, size_t options_size, RvModel** model,
                  char* message, size_t message_size);
const uint8_t* rv_model_buffer(const RvModel* model, int weights, size_t* size);
void rv_model_free(RvModel* model);
int rv_blacklist_status(RvLoader* loader, const char* name, size_t name_size, int version, char* message,
                        size_t message_size);
int rv_unload_model(RvLoader* loader, const char* name, size_t name_size, int version, char* message,
                    size_t message_size);
int rv_retire_model(RvLoader* loader, const char* name, size_t name_size, char* message, size_t message_size);
int rv_loader_deinit(RvLoader* loader, char* message, size_t message_size);
/* Deletes the object through its virtual destructor (once) and frees `loader`. */
int rv_close(RvLoader* loader, char* message, size_t message_size);
/* The vtable slot of each interface method, in declaration order (0: the destructor), as this
   shim was compiled: the layout check. Returns how many slots it wrote. */
int rv_vtable_slots(int* slots, int count);
size_t rv_interface_size(void);

#ifdef __cplusplus
}
#endif
