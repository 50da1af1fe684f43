/* The seed's Process 2 in C: opens L"MyFileMapping" read-only, maps 1024 bytes and
 * prints the message Process 1 (or shmipc) wrote.
 *
 * Build: x86_64-w64-mingw32-gcc -O2 -municode -o process2.exe process2.c */
#include <windows.h>
#include <stdio.h>
#include <string.h>

int wmain(void) {
    /* Open the file mapping object created by Process 1 */
    HANDLE hFileMapping = OpenFileMappingW(
        FILE_MAP_READ,    /* desired access */
        FALSE,            /* do not inherit the handle */
        L"MyFileMapping"  /* name */
    );
    if (hFileMapping == NULL) {
        printf("Error opening file mapping: %lu\n", GetLastError());
        return 1;
    }

    /* Map it into this process */
    LPVOID pMapView = MapViewOfFile(hFileMapping, FILE_MAP_READ, 0, 0, 1024);
    if (pMapView == NULL) {
        printf("Error mapping view of file: %lu\n", GetLastError());
        CloseHandle(hFileMapping);
        return 1;
    }

    /* Read data from the shared memory (bounded: the section is 1024 bytes) */
    const char *pData = (const char *)pMapView;
    printf("Received message from Process 1: %.*s\n", (int)strnlen(pData, 1024), pData);

    /* Unmap the view and close the file mapping object */
    UnmapViewOfFile(pMapView);
    CloseHandle(hFileMapping);
    return 0;
}
